"""The terminal service at run time: the loop, capture thread, command plane, health, alarms and lifecycle."""
