"""On-device identity: open-set 1:N against a signed gallery (matcher, thresholds, gallery, enrolment)."""
