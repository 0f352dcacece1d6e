"""The shared-memory ring between two peers on one host."""

import numpy as np


def test_a_ring_slot_is_words_where_the_payload_is(tmp_path):
    """Shared-memory rings hand out float64 views of their slots for payloads of
    whole words (so routes pack straight into them), bytes otherwise; a ring for
    small payloads holds many steps, one for big payloads fewer."""
    from spike.shm import MAX_SLOTS, MIN_SLOTS, ShmChannel

    small = ShmChannel(str(tmp_path / "small"), 128)
    odd = ShmChannel(str(tmp_path / "odd"), 13)
    big = ShmChannel(str(tmp_path / "big"), 1 << 20)
    try:
        assert small.claim(1).dtype == np.float64 and small.claim(1).size == 16
        assert odd.claim(1).dtype == np.uint8 and odd.claim(1).size == 13
        assert small.n_slots == MAX_SLOTS and big.n_slots == MIN_SLOTS
        receiver = ShmChannel(str(tmp_path / "small"), 128)
        receiver.reset()
        for step in range(1, MAX_SLOTS + 1):  # the sender may run a whole ring ahead
            small.claim(step)[:] = step
            small.publish(7, step)
        assert receiver.wait_for(7, 5)[0] == 5.0
        receiver.close()
    finally:
        for channel in (small, odd, big):
            channel.close()
