"""Calibration text for post-training quantization (ONNX Runtime static int8, NNCF).

A static int8 recipe fixes every activation's range from what the model sees while
calibrating, so the text must look like what it will serve: varied topics, lengths,
punctuation, numbers. It is deliberately *not* ``tuner.model.DEFAULT_EVAL_TEXTS``:
those sentences judge accuracy, and ranges fitted on the very sentences the guard
scores would flatter the recipe.

Every text is one batch-1 row, padded to one common length: the length of the
longest text, capped at ``MAX_CALIBRATION_TOKENS``. One shape, because ONNX Runtime's
histogram calibrators (percentile, entropy) stack what they collect and fail on rows
of different lengths; padding, because served inputs are padded to the sequence
length too, so padded positions belong in the ranges. The recipe does not depend on
the workload's sequence length: one artifact serves every length a study times.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tuner.model import ModelRef

__all__ = ["CALIBRATION_TEXTS", "MAX_CALIBRATION_TOKENS", "calibration_inputs", "calibration_set_id"]

MAX_CALIBRATION_TOKENS = 256

CALIBRATION_TEXTS: list[str] = [
    "A light rain fell over the harbour as the fishing boats came back in.",
    "Can you recommend a good book about the history of mathematics?",
    "The meeting has been moved to Thursday at 10:30 in room 4B.",
    "Mix the yeast with lukewarm water and let it rest for ten minutes before adding the flour.",
    "The company reported revenue of 4.2 billion dollars for the quarter, up 12 percent from a year earlier.",
    "I would not buy these headphones again: the left speaker stopped working after a week.",
    "Volcanoes form where magma from the mantle reaches the surface through cracks in the crust.",
    "Where is the nearest pharmacy that is open on Sundays?",
    "The museum's new wing displays more than three hundred paintings from the Dutch Golden Age.",
    "Please restart the router, wait thirty seconds, and then try connecting again.",
    "He trained for two years before running his first marathon in just under four hours.",
    "Why do leaves change colour in the autumn?",
    "The contract may be terminated by either party with ninety days' written notice.",
    "Our flight was delayed by six hours, and nobody at the airport could tell us why.",
    "Antibiotics do not work against viral infections such as the common cold.",
    "The orchestra opened the concert with a short overture and closed it with a symphony by Brahms.",
    "Type 'git status' to see which files have changed since the last commit.",
    "The children built a snowman in the garden and gave it a carrot for a nose.",
    "Exchange rates moved sharply after the announcement, with the yen gaining two percent against the dollar.",
    "Thanks, that fixed it!",
    "Not a single seat was empty when the lights went down and the film began.",
    "Honey never spoils: archaeologists have found edible honey in ancient Egyptian tombs.",
    "The patient was advised to rest, drink plenty of fluids and return if the fever lasted more than three days.",
    "Rome was not built in a day.",
    # Long rows: positions past 128 must be calibrated too.
    "When the bridge was finally opened in the spring of 1932, thousands of people walked across it on the "
    "first morning, many of them carrying flags and picnic baskets. The engineers had worked for almost eight "
    "years, through two floods, a strike and a shortage of steel, and more than once the newspapers had "
    "predicted that the project would be abandoned. The steel arch, at that time the widest of its kind, was "
    "assembled from both banks at once, and when the two halves met in the middle they were out of line by "
    "less than the width of a finger. Today the bridge carries eight lanes of traffic, a railway line and a "
    "cycle path, and it has been repainted so many times that the paint alone is said to weigh as much as a "
    "small ship. Visitors can still climb the arch with a guide, clipped to a safety line, and look down on "
    "the ferries that cross the water far below.",
    "Customer support transcript. Customer: Hello, I ordered a blue jacket in size medium on the third of "
    "March, order number 558-2141, but I received a black one in size large. Agent: I am sorry about that. "
    "Could you confirm the email address on the order? Customer: Sure, it is the one ending in example.org. "
    "Agent: Thank you. I can see the order, and you are right, the warehouse sent the wrong item. I have "
    "arranged a free return: you will receive a label by email within the hour, and the correct jacket will "
    "be sent as soon as the parcel is scanned by the courier. Customer: Will I be charged twice? Agent: No, "
    "there is no second charge, and if the medium is out of stock you will get a full refund instead.",
]


def calibration_inputs(model: "ModelRef", names: list[str]) -> list[dict[str, np.ndarray]]:
    """The calibration rows for ``model``: one (1, L) int64 array per graph input in
    ``names`` and per text, all of the same length L."""
    from tuner.model import load_tokenizer

    tokenizer = load_tokenizer(model)
    # model_max_length is a huge sentinel for tokenizers saved without one.
    limit = min(MAX_CALIBRATION_TOKENS, int(getattr(tokenizer, "model_max_length", MAX_CALIBRATION_TOKENS)))
    longest = max(len(tokenizer(text, truncation=True, max_length=limit)["input_ids"]) for text in CALIBRATION_TEXTS)
    rows = []
    for text in CALIBRATION_TEXTS:
        encoded = tokenizer([text], truncation=True, max_length=longest, padding="max_length", return_tensors="np")
        rows.append({n: np.ascontiguousarray(encoded[n], dtype=np.int64) for n in names})
    return rows


def calibration_set_id() -> str:
    """A short hash of the calibration texts and cap, for artifact recipes: editing the
    texts must rebuild every calibrated artifact."""
    payload = json.dumps({"texts": CALIBRATION_TEXTS, "max_tokens": MAX_CALIBRATION_TOKENS})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
