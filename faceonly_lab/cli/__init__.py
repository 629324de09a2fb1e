"""The lab's `faceonly` subcommands (evaluate, bench, fleet-sim), registered by name in device.cli."""
