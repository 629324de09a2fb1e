"""Typed wire and file formats (pydantic, unknown fields refused): what the terminal parses from the broker
and from disk, and what it answers. Their JSON Schemas in device/api/schemas are generated from these
models (`python -m device.wire.schemas`), so the published contract is the code's own."""
