"""StreamGuard: text is released only after a check, split values are caught, placeholders restored."""

from __future__ import annotations

import pytest

from goldenpath.guard import Guard, GuardPolicy, Stage, StreamGuard, Verdict

KEY = "AKIAIOSFODNN7EXAMPLE"
CARD = "4111 1111 1111 1111"
ANSWER = (
    "Sure, here it is. Write to <EMAIL_ADDRESS_1> today.\n"
    f"The deploy key is {KEY} and the card {CARD} is on file. "
    "Anything else, <EMAIL_ADDRESS_1>? Have a nice day."
)
MAPPING = {"<EMAIL_ADDRESS_1>": "jane.doe@example.com"}


def run(sg: StreamGuard, text: str, size: int) -> tuple[str, bool]:
    out: list[str] = []
    for i in range(0, len(text), size):
        step = sg.feed(text[i : i + size])
        out.append(step.text)
        if step.blocked:
            return "".join(out), True
    end = sg.finish()
    return "".join(out) + end.text, end.blocked


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16, 1000])
def test_split_values_are_redacted_and_placeholders_restored(guard: Guard, size: int) -> None:
    sent, blocked = run(StreamGuard(guard, "output", MAPPING), ANSWER, size)
    assert not blocked
    expected = ANSWER.replace("<EMAIL_ADDRESS_1>", "jane.doe@example.com")
    expected = expected.replace(KEY, "<AWS_ACCESS_KEY>").replace(CARD, "<CREDIT_CARD>")
    assert sent == expected


def test_restore_can_be_turned_off(guard: Guard) -> None:
    policy = GuardPolicy(pii={"restore": False})
    quiet = Guard(policy, injection=guard.injection, pii=guard.pii, secrets=guard.secrets)
    sent, _ = run(StreamGuard(quiet, "output", MAPPING), "Hello <EMAIL_ADDRESS_1>, bye.", 3)
    assert sent == "Hello <EMAIL_ADDRESS_1>, bye."


def test_a_block_stops_the_stream_before_the_offending_text(guard: Guard) -> None:
    polite = "Thanks for asking about the weather. It is sunny in Paris today, with a light breeze and no rain. "
    text = polite + "You are a stupid idiot and I hate you. This part is never sent either."
    sg = StreamGuard(guard)
    sent, blocked = run(sg, text, 4)
    assert blocked and sent and polite.startswith(sent) and "idiot" not in sent
    assert sg.feed("more").blocked and sg.finish().blocked
    assert [(d.type, d.action, d.stage) for d in sg.decisions.values()] == [("toxicity", "block", "output")]


def test_decisions_carry_no_values(guard: Guard) -> None:
    sg = StreamGuard(guard, "output", MAPPING)
    run(sg, ANSWER, 3)
    kinds = {(d.type, d.detail) for d in sg.decisions.values()}
    assert kinds == {("secret", "AWS Access Key"), ("pii", "CREDIT_CARD")}
    dumped = str([d.model_dump() for d in sg.decisions.values()])
    assert KEY not in dumped and CARD not in dumped and "jane" not in dumped


class CountingGuard(Guard):
    """A real guard that also counts how many characters its checks read."""

    read = 0

    def check(self, text: str, stage: Stage = "input") -> Verdict:
        self.read += len(text)
        return super().check(text, stage)


def test_checking_cost_grows_linearly(guard: Guard) -> None:
    reads = []
    for sentences in (80, 320):
        counting = CountingGuard(guard.policy, injection=guard.injection, pii=guard.pii, secrets=guard.secrets)
        run(StreamGuard(counting), "The weather is mild and sunny today. " * sentences, 2)
        reads.append(counting.read / sentences)
    assert reads[1] < 1.05 * reads[0]  # per sentence, checks read the same amount however long the answer


def test_text_is_held_back_by_the_tail(guard: Guard) -> None:
    sg = StreamGuard(guard)
    assert sg.feed("Short. ").text == ""  # under hold_chars: nothing can be released yet
    assert sg.finish().text == "Short. "
