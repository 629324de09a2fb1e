"""Fleets: many terminals on a clustered broker (a local NATS cluster, the simulated fleet, fleet operations)."""
