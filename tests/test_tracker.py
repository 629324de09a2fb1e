import numpy as np

from device.config.vision import TrackerConfig
from device.contracts import Detection
from device.vision.tracker import Tracker


def det(x, y, size=100):
    return Detection(np.array([x, y, x + size, y + size], np.float32), np.zeros((6, 2), np.float32), 0.9)


def test_one_id_per_face_across_frames_and_growth():
    tr = Tracker(TrackerConfig())
    ids = set()
    for i in range(20):
        # A face walking up: moves right and grows 5% per frame.
        up = tr.update([det(100 + 6 * i, 80, 60 * 1.05**i)], i / 15)
        ids |= {tid for tid, _ in up.matched}
    assert ids == {1}


def test_two_faces_keep_their_ids_and_a_lost_one_ends():
    tr = Tracker(TrackerConfig(max_missed_s=0.5))
    a = tr.update([det(0, 0), det(400, 0)], 0.0)
    assert [tid for tid, _ in a.matched] == [1, 2]
    b = tr.update([det(405, 2), det(3, 1)], 0.1)
    assert {tid: float(d.box[0]) for tid, d in b.matched} == {1: 3.0, 2: 405.0}
    tr.update([det(6, 2)], 0.3)
    c = tr.update([det(8, 2)], 0.7)
    assert c.ended == (2,)
    assert tr.finish() == (1,)


def test_far_jump_starts_a_new_track():
    tr = Tracker(TrackerConfig())
    tr.update([det(0, 0)], 0.0)
    up = tr.update([det(500, 300)], 0.1)
    assert [tid for tid, _ in up.matched] == [2]
