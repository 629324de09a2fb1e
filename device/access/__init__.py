"""Door modes: who may pass this door, when, and how besides the face (issue 22).

The pure middle (policy, schedules, credentials, passes, anti-passback, the door's decision) is tested on its
own; the edges (QR decoding on frames, the badge reader, the keypad on the door screen) hand it claims, and
the loop-owned component (device/access/component.py) turns its decisions into the gate, the screen and
signed `event.access` messages.
"""
