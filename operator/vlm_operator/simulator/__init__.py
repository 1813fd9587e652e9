"""A vLLM-compatible pod simulator for tests and the demo.

* :mod:`.server`: one simulated engine (OpenAI chat completions with images, a ``max_num_seqs`` queue, vLLM's
  ``/metrics`` for the configured engine version).
* :mod:`.podwatcher`: serves a simulator on each annotated pod's loopback IP in the dev cluster, and marks the pod
  Ready once the simulator answers ``/health`` (``vlmctl simulate-pods``).
* :mod:`.prometheus`: a real Prometheus on loopback that scrapes those pods through file-based discovery.
"""
