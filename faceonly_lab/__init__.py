"""The lab: what measures the terminal and is never run on it. LFW protocol and threshold curves (the FAR's
upper bound), identification and PAD evaluations, `faceonly bench` and its plots, the fleet simulator.

It may import the terminal (`device`) and the backend; neither imports it (tests/test_import_graph.py).
"""
