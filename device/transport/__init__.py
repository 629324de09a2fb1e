"""MQTT edge of the terminal: topics, payload envelope, durable outbox, broker link and command plane.

Only this package imports paho. Everything it hands to the service loop is a plain frozen value
taken from a queue, so all state stays owned by the loop (paho callbacks only enqueue).
"""
