"""The shared-memory ring between two peers on one host."""

import numpy as np
import pytest


def test_a_ring_slot_is_words_where_the_payload_is(tmp_path):
    """Shared-memory rings hand out float64 views of their slots for payloads of
    whole words (so routes pack straight into them), bytes otherwise; a ring for
    small payloads holds many steps, one for big payloads fewer."""
    from spike.comm.shm import MAX_SLOTS, MIN_SLOTS, ShmChannel

    small = ShmChannel(str(tmp_path / "small"), 128)
    odd = ShmChannel(str(tmp_path / "odd"), 13)
    big = ShmChannel(str(tmp_path / "big"), 1 << 20)
    receiver = ShmChannel(str(tmp_path / "small"), 128)
    try:
        assert small.claim(1).dtype == np.float64 and small.claim(1).size == 16
        assert odd.claim(1).dtype == np.uint8 and odd.claim(1).size == 13
        assert small.n_slots == MAX_SLOTS and big.n_slots == MIN_SLOTS
        receiver.reset()
        for step in range(1, small.n_slots + 1):  # the sender may run a whole ring ahead
            small.claim(step)[:] = step
            small.publish(7, step)

        class Blocked(Exception):
            pass

        def give_up():  # called while waiting: the sender would overwrite step 1
            raise Blocked

        with pytest.raises(Blocked):
            small.claim(small.n_slots + 1, wait_hook=give_up)
        assert receiver.wait_for(7, 1)[0] == 1.0
        receiver.release(1)
        small.claim(small.n_slots + 1)  # room again: returns at once
        assert receiver.wait_for(7, 5)[0] == 5.0
    finally:
        for channel in (small, odd, big, receiver):
            channel.close()
