"""Liveness: prompted challenge (head turn checked for planarity, blink from the eye contour), soft replay
cues, and one fused decision per track. See ../shared/LIVENESS.md for the measurements behind the design."""

from device.vision.liveness.prompts import ConsolePromptSink
from device.vision.liveness.session import LiveFrame, LivenessResult, LivenessSession

__all__ = ["ConsolePromptSink", "LiveFrame", "LivenessResult", "LivenessSession"]
