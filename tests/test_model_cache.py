"""The cloud's model cache: each model built once, and one model's build never blocks another's."""
import threading

import torch

from net.cloud.server import ModelCache


def test_a_slow_build_does_not_hold_up_other_models(monkeypatch):
    cache = ModelCache(torch.device("cpu"))
    release, building, builds = threading.Event(), threading.Event(), []

    def fake_build(name):
        builds.append(name)
        if name == "vgg_net":  # stands in for a build that takes seconds
            building.set()
            assert release.wait(30)
        return name, None

    monkeypatch.setattr(cache, "_build", fake_build)
    slow = [threading.Thread(target=cache.get, args=("vgg_net",)) for _ in range(3)]
    for t in slow:
        t.start()
    assert building.wait(10)
    got = []
    fast = threading.Thread(target=lambda: got.append(cache.get("le_net")))
    fast.start()
    fast.join(10)
    assert got == [("le_net", None)]  # answered while VGG16 is still building
    release.set()
    for t in slow:
        t.join(10)
    assert cache.get("vgg_net") == ("vgg_net", None)
    assert sorted(builds) == ["le_net", "vgg_net"]  # three concurrent asks, one build
