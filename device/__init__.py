"""faceonly: on-device face recognition that sends only the face, never the frame."""

__version__ = "0.1.0"
