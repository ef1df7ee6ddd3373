"""Plug-ins for other evaluation frameworks (optional; none is imported by the core).

- :mod:`adatp.integrations.lmms_eval`: ``--model adatp`` for lmms-eval (``pip install "adatp[lmms-eval]"``),
  and the local task ``adatp_mcq`` in ``adatp/integrations/lmms_eval_tasks`` (docs/eval-mcq.md).
"""
