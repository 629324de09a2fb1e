"""`faceonly bench`: the terminal's speed measured through the real pipeline, next to a peer library.

probe: timing hooks (stage samples, model invokes); frames: synthetic scenes cut from a replay's own faces;
runner: the replay, steady, idle and scaling passes; publish: the protect/sign/outbox/broker path;
peer: face_recognition on the same frames; report: the JSON document and the printed tables; plots.
"""
