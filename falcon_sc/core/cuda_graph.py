"""A training step replayed as a captured CUDA graph.

What a captured step may do (the constraints the trainer is written around):

- read and write only tensors that exist before the capture and stay at the same address: the batch indices,
  sampled-neighbour uniforms, target hardness and λ3 are fixed tensors that the loop fills in place;
- never synchronise with the host (no ``.item()``, no Python branch on a tensor's value, no ``one_hot`` with
  an inferred size): finiteness and the loss sums are accumulated on the device and read at checkpoints;
- draw no random numbers from a generator inside the step (a replay repeats the captured draws), so augmented
  views, which draw inside the step, are never captured;
- bake in every Python number it reads (the learning rate): a new value needs a new capture (``key``).
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


class GraphedStep:
    """Runs a training step through a CUDA graph: a few eager warm-up steps on a side stream (they create the
    optimiser's momentum buffers and cuBLAS workspaces), then one capture replayed every step. A new
    ``key`` (values baked into the graph, such as the learning rate) triggers a new capture.

    A step of the small FALCON classifier is ~150 tiny kernels; launched one by one from Python the GPU
    mostly waits for the host, replayed as one graph it does not.
    """

    warmup_steps = 3

    def __init__(self, step_fn):
        self.step_fn = step_fn
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key = None
        self.n_calls = 0
        self.failed = False

    def __call__(self, key) -> None:
        self.n_calls += 1
        if self.failed:
            self.step_fn()
            return
        if self.n_calls <= self.warmup_steps:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step_fn()
            torch.cuda.current_stream().wait_stream(side)
            return
        if self.graph is None or key != self.key:
            self.graph = None  # release the previous capture's memory first
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):  # records the step's kernels without running them
                    self.step_fn()
            except RuntimeError as err:  # nothing ran; the step is taken eagerly from now on
                logger.warning("CUDA graph capture failed (%s); training continues without graphs.", err)
                self.failed = True
                self.step_fn()
                return
            self.graph, self.key = graph, key
        self.graph.replay()
