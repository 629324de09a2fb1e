"""The backend's `faceonly` subcommands (backend, its back office, fleet), registered by name in device.cli."""
