"""A WebSocket bay's messages stay on the workers: the docking link is
read by the bay's home worker and written by each worker itself, so the
control loop (the main thread) is not woken per message, with one worker
or two, and each client's messages keep their order (the link's life: a
bay that dies or re-docks, is test_bays.py's and test_bay_resume.py's). The wake-ups are counted from /proc (the main thread's
voluntary context switches), not timed."""
import pytest

from test_bays import ECHO_BAY, bay_toml, frame, raw_connect, read_frame, read_until_close, start


def control_switches(pid):
    """Voluntary context switches of the main thread (the control loop)."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def echo(s, payload):
    s.sendall(frame(1, payload))
    op, got = read_frame(s)
    assert (op, got) == (1, payload)


@pytest.mark.parametrize("workers", [1, 2])
def test_round_trips_do_not_wake_the_control_loop(fleet, workers):
    # no metrics listener: a stranger's connection to its port (a leftover
    # probe of another test's fleet, say) would wake the control loop
    px = start(fleet, bay_toml("echo", ECHO_BAY), mothership={"workers": workers, "metrics_port": None})
    clients = [raw_connect(px) for _ in range(4)]  # with 2 workers, clients on both
    for i, s in enumerate(clients):
        echo(s, b"warm %d" % i)
    before = control_switches(px.ms.pid)
    n = 0
    for r in range(100):
        for i, s in enumerate(clients):
            echo(s, b"client %d message %d" % (i, r))
            n += 1
    woken = control_switches(px.ms.pid) - before
    # through the control loop each message woke it twice (Cargo in, the
    # bay's answer out): 800 here; timers may wake it a few times
    assert woken < 50, f"{woken} wake-ups of the control loop for {n} round trips"
    for s in clients:
        s.sendall(frame(8, b"\x03\xe8"))
        assert read_until_close(s)[0] == 1000
        s.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_order_per_client_with_interleaved_clients(fleet, workers):
    px = start(fleet, bay_toml("echo", ECHO_BAY), mothership={"workers": workers})
    clients = [raw_connect(px) for _ in range(6)]
    # each client sends a burst before reading: the answers come in order
    for i, s in enumerate(clients):
        s.sendall(b"".join(frame(1, b"%d:%d" % (i, k)) for k in range(50)))
    for i, s in enumerate(clients):
        for k in range(50):
            assert read_frame(s) == (1, b"%d:%d" % (i, k))
        s.close()

