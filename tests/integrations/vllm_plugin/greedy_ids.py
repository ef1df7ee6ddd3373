"""Greedy ids of one video prompt in a fresh vLLM engine (run as a script, so that the plug-in can
be left out of the process: ``VLLM_PLUGINS=none``). Prints one JSON line: the model class, the
prompt ids and the generated ids.

    python -m tests.integrations.vllm_plugin.greedy_ids MODEL_DIR NAME RATE
"""

from __future__ import annotations

import json
import sys

if __name__ == "__main__":
    from .engine import greedy, make_llm, video_request

    model_dir, name, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
    llm = make_llm(model_dir, video_pruning_rate=rate, hf_overrides={"adatp_method": "fastvid"})
    out = llm.generate(video_request(name), greedy(8))[0]
    (cls,) = llm.apply_model(lambda model: type(model).__name__)
    print("RESULT " + json.dumps({"class": cls, "prompt": list(out.prompt_token_ids), "ids": list(out.outputs[0].token_ids)}))
