"""The contracts between the terminal's stages: the values that flow (frames, detections, observations,
prompts, reasons), the interfaces between stages, and the errors that cross them.

A leaf: nothing here imports the rest of `device` (tests/test_import_graph.py), so every stage, the
service loop and the tools can depend on it without depending on each other.
"""

from device.contracts.errors import SourceError
from device.contracts.frames import Detection, Frame
from device.contracts.observation import FaceObservation, ModelRef, ProbeKind
from device.contracts.prompts import (
    ENROL_REASON_CODES,
    PROMPT_CODES,
    PROMPT_SCHEMA,
    STEP_CODES,
    FaceGuide,
    GuideSink,
    Prompt,
    PromptSink,
    PromptState,
    Step,
)
from device.contracts.reasons import CODES, Reason
from device.contracts.stages import FacePipeline, FrameSource, Protector

__all__ = [
    "CODES",
    "ENROL_REASON_CODES",
    "PROMPT_CODES",
    "PROMPT_SCHEMA",
    "STEP_CODES",
    "Detection",
    "FaceGuide",
    "FaceObservation",
    "FacePipeline",
    "Frame",
    "FrameSource",
    "GuideSink",
    "ModelRef",
    "ProbeKind",
    "Prompt",
    "PromptSink",
    "PromptState",
    "Protector",
    "Reason",
    "SourceError",
    "Step",
]
