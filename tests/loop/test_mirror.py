"""The board as the answering process sees it: every RPC-visible number equal to the DecisionBoard's, after
full and wake-up cycles, variants coming and going, and in messages that grow with what changed."""

from __future__ import annotations

import asyncio
import pickle

from kedascaler.engine.types import Decision, Reason, VariantKey, VariantSpec
from kedascaler.loop.board import DecisionBoard
from kedascaler.loop.mirror import KEY_CHUNK, Keys, Message, MirrorBoard, MirrorFeed, Update, Values

NS = "llm"


def spec(key: VariantKey) -> VariantSpec:
    return VariantSpec(key=key, model_id=f"model-{key.name}", target_name=key.name)


def decision(key: VariantKey, desired: int, active: bool = True, at: float = 1000.0) -> Decision:
    return Decision(key=key, model_id=f"model-{key.name}", desired_replicas=desired, active=active,
                    reason=Reason("hold", "test"), decided_at=at, data_at=at)


def keys(n: int, namespace: str = NS) -> list[VariantKey]:
    return [VariantKey(namespace, f"v-{i:05d}") for i in range(n)]


class Wire:
    """DecisionBoard → feed → (pickled, as over the pipe) → MirrorBoard, with every message kept."""

    def __init__(self) -> None:
        self.board = DecisionBoard()
        self.mirror = MirrorBoard()
        self.sent: list[Message] = []
        self.board.listen(MirrorFeed(self._send))

    def _send(self, message: Message) -> None:
        self.sent.append(message)
        self.mirror.apply(pickle.loads(pickle.dumps(message)))

    def sizes(self) -> list[int]:
        return [len(pickle.dumps(m)) for m in self.sent]


def assert_same(board: DecisionBoard, mirror: MirrorBoard, probe: list[VariantKey]) -> None:
    assert mirror.version == board.version
    for key in probe:
        assert mirror.knows(key) == board.knows(key), key
        ours, theirs = board.get(key), mirror.get(key)
        if ours is None:
            assert theirs is None, key
        else:
            assert theirs is not None, key
            assert (theirs.desired_replicas, theirs.active, theirs.data_at) == \
                   (ours.desired_replicas, ours.active, ours.data_at), key


def test_a_fleet_larger_than_a_chunk_reads_the_same_on_both_sides():
    wire = Wire()
    fleet = keys(2 * KEY_CHUNK + 7)
    wire.board.publish([decision(k, i % 9, active=i % 3 != 0, at=1000.0 + i / 7) for i, k in enumerate(fleet)],
                       [spec(k) for k in fleet])
    assert sum(isinstance(m, Keys) for m in wire.sent) == 3  # the names in three pieces, then their numbers
    assert isinstance(wire.sent[-1], Values)
    assert_same(wire.board, wire.mirror, fleet + [VariantKey(NS, "unknown"), VariantKey("other", "v-00001")])
    assert wire.mirror.names_in(NS) == wire.board.names_in(NS)


def test_a_known_variant_without_a_decision_is_known_but_not_decided():
    wire = Wire()
    fleet = keys(3)
    wire.board.publish([decision(fleet[0], 2)], [spec(k) for k in fleet])
    assert wire.mirror.knows(fleet[2]) and wire.mirror.get(fleet[2]) is None
    assert wire.mirror.get(fleet[0]) is not None and wire.mirror.get(fleet[0]).desired_replicas == 2


def test_a_wake_up_cycle_sends_only_its_models_numbers_and_an_unchanged_fleet_no_names():
    wire = Wire()
    fleet = keys(5_000)
    specs = [spec(k) for k in fleet]
    wire.board.publish([decision(k, 1) for k in fleet], specs)
    first = len(wire.sent)
    wire.board.publish([decision(k, 2, at=1015.0) for k in fleet], specs)  # the next full cycle
    assert [type(m) for m in wire.sent[first:]] == [Values]  # numbers only: the names did not change
    assert wire.sizes()[-1] < 5_000 * 20
    wire.board.publish([decision(fleet[42], 0, active=False, at=1020.0)])  # a wake-up cycle of one model
    assert isinstance(wire.sent[-1], Update) and wire.sizes()[-1] < 1_000
    assert_same(wire.board, wire.mirror, fleet)
    assert wire.mirror.get(fleet[42]).desired_replicas == 0 and wire.mirror.get(fleet[41]).desired_replicas == 2


def test_variants_that_come_and_go_are_known_and_forgotten():
    wire = Wire()
    fleet = keys(10)
    wire.board.publish([decision(k, 1) for k in fleet], [spec(k) for k in fleet])
    now = fleet[2:] + [VariantKey(NS, "new-one")]
    wire.board.publish([decision(k, 3) for k in now], [spec(k) for k in now])
    assert not wire.mirror.knows(fleet[0]) and wire.mirror.get(fleet[0]) is None
    assert wire.mirror.get(VariantKey(NS, "new-one")).desired_replicas == 3
    assert_same(wire.board, wire.mirror, fleet + now)


def test_numbers_for_names_never_received_in_full_leave_the_last_good_board():
    wire = Wire()
    fleet = keys(KEY_CHUNK + 1)
    wire.board.publish([decision(k, 1) for k in fleet], [spec(k) for k in fleet])
    other = MirrorBoard()
    for message in wire.sent:
        if not (isinstance(message, Keys) and message.index == 1):  # one piece of the names lost
            other.apply(message)
    assert other.version == 0 and other.get(fleet[0]) is None  # nothing half-applied
    wire.board.publish([decision(k, 2) for k in fleet], [spec(k) for k in fleet])
    other.apply(wire.sent[-1])
    assert other.version == 0  # still: its names were never whole


def test_a_flip_of_the_active_flag_reaches_a_subscribed_stream():
    async def scenario() -> list[bool]:
        wire = Wire()
        key = VariantKey(NS, "llama")
        wire.board.publish([decision(key, 1, active=True)], [spec(key)])
        sub = wire.mirror.subscribe(key)
        got = []
        wire.board.publish([decision(key, 0, active=False)])
        got.append(await asyncio.wait_for(sub.next(), 5))
        wire.board.publish([decision(key, 0, active=False, at=1030.0)])  # no flip: nothing pushed
        wire.board.publish([decision(key, 1, active=True)], [spec(key)])
        got.append(await asyncio.wait_for(sub.next(), 5))
        sub.close()
        assert wire.mirror.subscriber_count == 0
        return got

    assert asyncio.run(scenario()) == [False, True]


def test_a_feed_that_listens_late_gets_the_board_as_it_is():
    board = DecisionBoard()
    fleet = keys(4)
    board.publish([decision(k, 5) for k in fleet], [spec(k) for k in fleet])
    mirror = MirrorBoard()
    board.listen(MirrorFeed(mirror.apply), replay=True)
    assert_same(board, mirror, fleet)
