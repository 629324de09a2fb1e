"""The vision stages: capture sources, detection, tracking, quality, landmarks, liveness, alignment and
embedding, pure code on numpy arrays behind the contracts in device.contracts."""
