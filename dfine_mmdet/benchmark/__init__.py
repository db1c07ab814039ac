"""Library code of the benchmark tools (``tools/benchmark/``,
``tools/experiments/``); not imported by ``import dfine_mmdet``.

* :mod:`.timing`: timed calls and their statistics (median, p10, p90);
* :mod:`.models`: the one detector builder of the tools, parameter counts;
* :mod:`.inference_paths`: PyTorch / ONNX Runtime / OpenVINO paths of a
  D-FINE, plugin and official export graphs;
* :mod:`.flops`: FLOP counting with a handle for ``aten::grid_sampler``;
* :mod:`.num_classes`: setting the class count of any MMDetection model;
* :mod:`.accuracy`: COCO AP of a checkpoint, toy mAP after equal training
  time;
* :mod:`.toy_data`, :mod:`.toy_training`: the synthetic toy set and short
  training runs on it;
* :mod:`.published_ap`, :mod:`.speed_accuracy_chart`: published COCO AP and
  the speed/accuracy chart of ``compare.py --ap``;
* :mod:`.profiling`, :mod:`.official_compare`, :mod:`.compile_speed`,
  :mod:`.gpu_check`: the training-step profiler, the side-by-side timer
  against the official code, compiled-vs-eager timing and the one-command
  GPU check (docs/profiling.md).

The wall-clock budget is an MMEngine hook:
:class:`dfine_mmdet.engine.hooks.WallClockBudgetHook`.
"""
