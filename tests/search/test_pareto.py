from tuner.search.pareto import dominates, front, throughput_of


def test_front_keeps_the_non_dominated_points_by_latency():
    points = [
        ("a", 1.0, 900.0),   # fastest call
        ("b", 2.0, 1500.0),  # two instances: slower calls, more throughput
        ("c", 2.5, 1400.0),  # dominated by b
        ("d", 4.0, 1800.0),  # four instances
        ("e", 1.0, 800.0),   # dominated by a (same latency, less throughput)
    ]
    assert front(points) == ["a", "b", "d"]


def test_equal_points_are_both_kept():
    assert front([("x", 1.0, 10.0), ("y", 1.0, 10.0)]) == ["x", "y"]
    assert not dominates((1.0, 10.0), (1.0, 10.0))
    assert dominates((1.0, 10.0), (1.0, 9.0)) and dominates((0.9, 10.0), (1.0, 10.0))


def test_single_instance_throughput_is_the_inverse_latency():
    assert throughput_of(2.0, None, batch=4) == 2000.0
    assert throughput_of(2.0, 3500.0, batch=4) == 3500.0  # measured across instances wins
    assert throughput_of(None, None, batch=1) is None
    # With one instance per trial the front is the fastest configuration alone.
    points = [(n, m, throughput_of(m, None, 1)) for n, m in enumerate([3.0, 1.0, 2.0])]
    assert front(points) == [1]
