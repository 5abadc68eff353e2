"""Grammars for the model's answers, as token masks: pointing answers and yes/no.

Why our own small automaton over the tokenizer's vocabulary rather than a library: llguidance and
outlines-core install as torch-free wheels for Python 3.10-3.12 on x86_64 and aarch64 (xgrammar
requires torch and transformers, so it is out), but the pointing answer is a counter machine, not a
regular language: point indices must run 1, 2, 3, ... in order, coordinates are bounded numbers
(0..1000 for Molmo2, 0..100 % for Molmo v1) and each check caps its number of points (``max_points``).
A regex or CFG library needs that unrolled up to the cap and recompiled per cap, and the engine also
needs what no library gives directly: the cheapest completion of each state in tokens, so that an
answer can always be closed within ``max_new_tokens``. The automaton below is ~300 lines of Python,
compiled in milliseconds for the demo student's 384 tokens, with masks cached per state.

The accepted answers (each followed by an end token):

* Molmo2: ``<points coords="I 1 x y 2 x y ...">label</points>`` — one image group (I = 1..99), object
  indices 1, 2, 3 ... in order, x and y integers 0..1000 of at most 4 digits;
* Molmo v1: ``<point x="P" y="P"[ alt="..."]>label</point>`` and
  ``<points x1="P" y1="P" x2="P" y2="P" ...[ alt="..."]>label</points>``, P in 0..100 with at most
  two decimals, indices in order;
* ``There are none.``

A bundle's own dialect narrows this (``dialect="molmo2"``, what ``points.format_molmo2_points`` writes
and a Molmo2 bundle is trained on): only the coords form, on image 1, coordinates of exactly three
digits (or 1000); the label may be fixed to the check's object (``object_label``); fixed text is
spelled only in the tokenizer's own pieces (its encoding of that text) and the answer ends with the
first end token. Then the wrapper, the point indices, the space after each x, the label, the closing
tag and the end token are the only token the grammar allows: ``Constraint.forced_run`` gives them to
the engine, which appends them without sampling (jump-forward).

Every accepted answer parses with ``points.parse_points``. Labels are at most ``MAX_LABEL`` bytes of
printable text without ``<``, ``>`` or ``"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

MAX_LABEL = 40  # bytes of a label or an alt attribute
NONE_ANSWER = "There are none."
DIALECTS = (None, "molmo2")
_OBJECT = re.compile(r"Point to (?:the |any |each |every |all )?(?:[a-z]+ )*([a-z]*[a-rt-z])s\.")


def object_label(prompt: str) -> str | None:
    """The label a pointing answer to ``prompt`` carries, where the prompt names its object plainly
    ("Point to the screws." → ``screw``, "Point to any surface defects." → ``defect``): the last
    word, singular. None for any other phrasing (the label is then the model's choice)."""
    match = _OBJECT.fullmatch(prompt.strip())
    return match.group(1) if match else None


State = tuple[Any, ...]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character map (what ByteLevel tokenizers store in their vocabulary)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def token_texts(tokenizer, vocab_size: int) -> list[str | None]:
    """Each token id's bytes as a latin-1 string (one character per byte); None for special tokens and
    ids the tokenizer does not know (they are never allowed inside an answer)."""
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    byte_level = "ByteLevel" in json.dumps(json.loads(tokenizer.to_str()).get("decoder"))
    inverse = {c: b for b, c in _bytes_to_unicode().items()}
    texts: list[str | None] = []
    for i in range(vocab_size):
        piece = tokenizer.id_to_token(i)
        if piece is None or piece in special:
            texts.append(None)
        elif byte_level and all(c in inverse for c in piece):
            texts.append(bytes(inverse[c] for c in piece).decode("latin-1"))
        else:
            texts.append(tokenizer.decode([i]).encode("utf-8").decode("latin-1") or None)
    return texts


def _label_char(ch: str) -> bool:
    return (" " <= ch <= "~" or ch >= "\x80") and ch not in '<>"'


class PointMachine:
    """The character automaton of a pointing answer with at most ``cap`` points (None: no cap).

    A state is a hashable tuple; ``step`` returns the next state or None (the character is not
    allowed). Alternatives are (literal, next key, grows): ``grows`` marks a continuation that starts
    another point, which the shortest completion (``close_path``) never takes."""

    def __init__(self, cap: int | None = None, dialect: str | None = None, label: str | None = None):
        if dialect not in DIALECTS:
            raise ValueError(f"unknown answer dialect {dialect!r}")
        self.cap, self.label = cap, label
        self.coord = "m2w" if dialect == "molmo2" else "m2"  # m2w: exactly three digits, or 1000
        forms: tuple = (('<points coords="', ("num", "img", ("m2img",)), False),)
        if dialect == "molmo2":
            forms = (('<points coords="1 1 ', ("num", self.coord, ("m2x", 0)), False),)
        else:
            forms += (
                ('<point x="', ("num", "pct", ("v1y",)), False),
                ('<points x1="', ("num", "pct", ("v1my", 1)), False),
            )
        self.start: State = ("alts", 0, (*forms, (NONE_ANSWER, ("done",), False)))

    def _more(self, done: int) -> bool:
        return self.cap is None or done < self.cap

    def enter(self, key: State) -> State:
        """The state at the beginning of continuation ``key``."""
        kind = key[0]
        if kind == "num":  # ("num", spec, after): a number, then continuation `after`
            return ("n", key[1], 0, 0, -1, 0, key[2])
        if kind == "done":
            return ("done",)
        if kind == "label":
            return ("label", 0, key[1])
        if kind == "alt":
            return ("alt", 0, key[1])
        if kind == "lit":  # ("lit", text, next)
            return ("alts", 0, ((key[1], key[2], False),))
        alts: tuple = ()
        if kind == "m2img":  # after the image index: the first point
            alts = ((" 1 ", ("num", self.coord, ("m2x", 0)), False),)
        elif kind == "m2x":  # after x of point done+1
            alts = ((" ", ("num", self.coord, ("m2y", key[1])), False),)
        elif kind == "m2y":  # after y: point done+1 is complete
            done = key[1] + 1
            label = ("label", "</points>") if self.label is None else ("lit", f"{self.label}</points>", ("done",))
            alts = (('">', label, False),)
            if self._more(done):
                alts += ((f" {done + 1} ", ("num", self.coord, ("m2x", done)), True),)
        elif kind == "v1y":
            alts = (('" y="', ("num", "pct", ("v1end",)), False),)
        elif kind == "v1end":
            alts = (('">', ("label", "</point>"), False), ('" alt="', ("alt", "</point>"), False))
        elif kind == "v1my":  # after x{k}
            k = key[1]
            alts = ((f'" y{k}="', ("num", "pct", ("v1mend", k)), False),)
        elif kind == "v1mend":  # after y{k}: point k is complete
            k = key[1]
            alts = (('">', ("label", "</points>"), False), ('" alt="', ("alt", "</points>"), False))
            if self._more(k):
                alts += ((f'" x{k + 1}="', ("num", "pct", ("v1my", k + 1)), True),)
        else:
            raise ValueError(f"unknown continuation {key!r}")
        return ("alts", 0, alts)

    def step(self, state: State, ch: str) -> State | None:
        kind = state[0]
        if kind == "alts":
            pos = state[1]
            matching = tuple(a for a in state[2] if a[0][pos] == ch)
            if not matching:
                return None
            if len(matching) == 1 and len(matching[0][0]) == pos + 1:
                return self.enter(matching[0][1])
            return ("alts", pos + 1, matching)
        if kind == "n":
            return self._number(state, ch)
        if kind == "label":
            if ch == "<":
                return self.step(self.enter(("lit", state[2], ("done",))), ch)
            return ("label", state[1] + 1, state[2]) if _label_char(ch) and state[1] < MAX_LABEL else None
        if kind == "alt":
            if ch == '"':
                return self.enter(("lit", ">", ("label", state[2])))
            return ("alt", state[1] + 1, state[2]) if _label_char(ch) and state[1] < MAX_LABEL else None
        return None  # done: only an end token

    def _number(self, state: State, ch: str) -> State | None:
        _, spec, digits, value, frac, fvalue, after = state
        if "0" <= ch <= "9":
            d = ord(ch) - 48
            if frac >= 0:  # decimals of a percentage: at most two, and none above 100
                if frac >= 2 or (value == 100 and d):
                    return None
                return ("n", spec, digits, value, frac + 1, fvalue * 10 + d, after)
            value2 = value * 10 + d
            if spec == "img" and (digits >= 2 or (digits == 0 and d == 0)):
                return None
            if spec == "m2" and (digits >= 4 or value2 > 1000):
                return None
            if spec == "m2w" and (digits >= 4 or (digits == 3 and value2 != 1000)):
                return None
            if spec == "pct" and (digits >= 3 or value2 > 100):
                return None
            return ("n", spec, digits + 1, value2, frac, fvalue, after)
        if ch == "." and spec == "pct" and digits and frac < 0:
            return ("n", spec, digits, value, 0, 0, after)
        if digits and frac != 0 and (spec != "m2w" or digits >= 3):
            return self.step(self.enter(after), ch)
        return None

    def forced_text(self, state: State) -> str:
        """The text that must follow ``state`` whatever comes (a literal, the space after a complete
        three-digit coordinate, ...), up to the next choice; empty when the next character is a choice."""
        out = ""
        while True:
            if state[0] == "alts" and len(state[2]) == 1:
                literal, key, _ = state[2][0]
                out += literal[state[1] :]
                state = self.enter(key)
            elif state[0] == "n" and state[1] == "m2w" and state[2] == 3 and state[3] != 100:
                state = self.enter(state[6])
            else:
                return out

    def close_path(self, state: State) -> str:
        """A shortest way to finish from ``state`` (characters; no new point is started)."""
        kind = state[0]
        if kind == "done":
            return ""
        if kind == "alts":
            pos = state[1]
            options = [a for a in state[2] if not a[2]] or list(state[2])
            return min((a[0][pos:] + self.close_path(self.enter(a[1])) for a in options), key=len)
        if kind == "n":
            if not state[2] or state[4] == 0 or (state[1] == "m2w" and state[2] < 3):
                ch = "1" if state[1] == "img" and not state[2] else "0"
            else:
                ch = min((a for a in self.enter(state[6])[2] if not a[2]), key=lambda a: len(a[0]))[0][0]
        else:
            ch = "<" if kind == "label" else '"'
        stepped = self.step(state, ch)
        if stepped is None:
            raise AssertionError(f"no completion from {state!r}")
        return ch + self.close_path(stepped)


class PointGrammar:
    """A pointing answer's grammar compiled against one tokenizer's vocabulary: token masks per
    state (cached), the state after a token, and the fewest tokens that close an answer."""

    def __init__(
        self,
        texts: list[str | None],
        stop_ids: tuple[int, ...],
        cap: int | None = None,
        dialect: str | None = None,
        label: str | None = None,
        encode: Callable[[str], list[int]] | None = None,
    ):
        self.machine = PointMachine(cap, dialect, label)
        self.texts = texts
        self.stop_ids = tuple(s for s in stop_ids if s < len(texts))
        # A dialect's answers end with the first end token and spell fixed text in the tokenizer's
        # own pieces (``encode``): what the model was trained on, one token per step.
        self.encode = encode if dialect is not None else None
        if dialect is not None:
            self.stop_ids = self.stop_ids[:1]
        self.vocab = len(texts)
        by_first: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if text:
                by_first.setdefault(text[0], []).append(i)
        self.by_first = {ch: np.array(ids, np.int64) for ch, ids in by_first.items()}
        self.pieces = {text: i for i, text in enumerate(texts) if text}
        self.longest = max((len(t) for t in self.pieces), default=1)
        self._masks: dict[State, np.ndarray] = {}
        self._close: dict[State, int] = {}
        self.forced_runs: dict[State, tuple] = {}  # Constraint's forced runs under an ample budget

    @property
    def start(self) -> State:
        return self.machine.start

    def advance(self, state: State, token: int) -> State | None:
        """The state after ``token`` (None: not allowed; a stop token leaves ``done`` as it is)."""
        if state[0] == "done":
            return state if token in self.stop_ids else None
        text = self.texts[token] if token < self.vocab else None
        if not text:
            return None
        for ch in text:
            after = self.machine.step(state, ch)
            if after is None:
                return None
            state = after
        return state

    def after(self, state: State, token: int) -> State:
        """The state after ``token``, which must be allowed (``allowed``: never None there)."""
        following = self.advance(state, token)
        if following is None:
            raise ValueError(f"token {token} is not allowed by the grammar")
        return following

    def allowed(self, state: State) -> np.ndarray:
        """The token ids allowed after ``state`` (sorted)."""
        mask = self._masks.get(state)
        if mask is None:
            canonical = self._canonical(state)
            if state[0] == "done":
                mask = np.array(sorted(self.stop_ids), np.int64)
            elif canonical is not None:
                mask = np.array([canonical], np.int64)
            else:
                ids = [
                    int(i)
                    for ch, candidates in self.by_first.items()
                    if self.machine.step(state, ch) is not None
                    for i in candidates
                    if self.advance(state, int(i)) is not None
                ]
                mask = np.array(sorted(ids), np.int64)
            if len(self._masks) > 50_000:
                self._masks.clear()
            self._masks[state] = mask
        return mask

    def _canonical(self, state: State) -> int | None:
        """The tokenizer's first piece of the text that must follow ``state`` (None: no fixed text,
        no tokenizer, or a piece the automaton would not take)."""
        if self.encode is None or state[0] == "done":
            return None
        text = self.machine.forced_text(state)
        pieces = self.encode(text) if text else []
        if pieces and self.advance(state, pieces[0]) is not None:
            return int(pieces[0])
        return None

    def close_cost(self, state: State) -> int:
        """Tokens that finish an answer from ``state``, the end token included: the shortest
        character completion, spelled in the fewest vocabulary pieces."""
        cost = self._close.get(state)
        if cost is None:
            path = self.machine.close_path(state)
            best = [0] + [10**6] * len(path)  # fewest pieces covering path[:i]
            for i in range(1, len(path) + 1):
                for j in range(max(0, i - self.longest), i):
                    if best[j] + 1 < best[i] and path[j:i] in self.pieces:
                        best[i] = best[j] + 1
            cost = best[-1] + 1
            if self.encode is not None and path:  # fixed text is spelled in the tokenizer's pieces
                cost = max(cost, len(self.encode(path)) + 1)
            self._close[state] = cost
        return cost

    def choices(self, state: State, left: int) -> np.ndarray:
        """The allowed tokens when ``left`` tokens may still be generated (this one included): those
        after which the answer can still be closed in time. All allowed tokens when none can."""
        allowed = self.allowed(state)
        if state[0] == "done" or left > self.close_cost(state) + self.longest + 2:
            return allowed
        fits = [t for t in allowed if self.close_cost(self.after(state, int(t))) <= left - 1]
        return np.array(fits, np.int64) if fits else allowed


class Vocabulary:
    """A bundle tokenizer's token texts, read once; grammars per point cap are built from it."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: tuple[int, ...], dialect: str | None = None):
        self.texts = token_texts(tokenizer, vocab_size)
        self.stop_ids = tuple(stop_ids)
        self.dialect = dialect
        self.tokenizer = tokenizer
        self._grammar = lru_cache(maxsize=64)(self._make)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def _make(self, cap: int | None, label: str | None) -> PointGrammar:
        return PointGrammar(self.texts, self.stop_ids, cap, self.dialect, label, self.encode)

    def pointing(self, cap: int | None = None, label: str | None = None) -> PointGrammar:
        """The pointing grammar with at most ``cap`` points (and, in a dialect, the label fixed to
        ``label`` when given), compiled once per cap and label."""
        return self._grammar(cap, label if self.dialect is not None else None)

    def yes_no(self, yes: tuple[int, ...], no: tuple[int, ...]) -> np.ndarray:
        """The yes/no answer's grammar: exactly one token of ``yes`` or ``no``. The engine scores a
        yes/no question from these tokens' logits alone, so the answer is always one of the two."""
        return np.array(sorted(set(yes) | set(no)), np.int64)


class Constraint:
    """One row's grammar and state during a decode (``Engine.greedy_batch``)."""

    def __init__(self, grammar: PointGrammar):
        self.grammar = grammar
        self.state = grammar.start

    def choose(self, logits: np.ndarray, left: int) -> int:
        """The allowed token with the highest logit (the lowest id among equals, as ``np.argmax`` of
        the masked logits)."""
        allowed = self.grammar.choices(self.state, left)
        return int(allowed[int(np.argmax(logits[allowed]))]) if len(allowed) > 1 else int(allowed[0])

    def forced(self, left: int) -> int | None:
        """The one token the grammar allows next, when there is exactly one."""
        allowed = self.grammar.choices(self.state, left)
        return int(allowed[0]) if len(allowed) == 1 else None

    def forced_run(self, left: int) -> list[int]:
        """The tokens the grammar allows one at a time from here (each the only one allowed), with
        ``left`` tokens still to generate; the state is not moved."""
        return self._run(left)[0]

    def jump(self, left: int) -> list[int]:
        """``forced_run``, and the state moved past those tokens."""
        run, state = self._run(left)
        self.state = state
        return run

    def _run(self, left: int) -> tuple[list[int], State]:
        cached = self.grammar.forced_runs.get(self.state)
        if cached is not None and left >= cached[2]:  # the budget cuts nothing short: as computed
            return list(cached[0]), cached[1]
        state = self.state
        run: list[int] = []
        need = 0  # the budget above which no step of this run depends on it
        while len(run) < left:
            need = max(need, self.grammar.close_cost(state) + self.grammar.longest + 3 + len(run))
            allowed = self.grammar.choices(state, left - len(run))
            if len(allowed) != 1:
                break
            run.append(int(allowed[0]))
            if state[0] == "done":
                break
            state = self.grammar.after(state, run[-1])
        if left >= need:
            if len(self.grammar.forced_runs) > 50_000:
                self.grammar.forced_runs.clear()
            self.grammar.forced_runs[self.state] = (tuple(run), state, need)
        return run, state

    def advance(self, token: int) -> None:
        self.state = self.grammar.after(self.state, token)

    @property
    def done(self) -> bool:
        return self.state[0] == "done"
