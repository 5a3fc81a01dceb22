"""Packaging: a registered model turned into ONNX, run with ONNX Runtime, carried in a bundle.

This package sits above ``registry/`` and below ``api.py``. Its modules, lowest first; each
imports only modules listed above it (counting imports inside functions and under
``TYPE_CHECKING``), so there is no import cycle among them::

    onnxfile    an ONNX file: load it, check it, infer its Signature from the graph
    runtime     ONNX Runtime: one session per model (InferenceRunner); predict and bench
                on a registered version
    sources     the source model in its training framework: load it (the pickle policy),
                name and order its inputs, run a torch model, require() an optional extra
    samples     the inputs parity is proven on, read from a file or generated
                (imports sources)
    converters  scikit-learn or PyTorch to checked ONNX bytes (imports sources, onnxfile)
    parity      the source model and ONNX Runtime agree on the samples
                (imports sources, runtime, converters)
    exporting   export_onnx: load, sample, convert, prove parity, register the ONNX file as
                a derived version (imports onnxfile, sources, samples, converters, parity)
    bundle      one version as a self-describing zip with a standalone predict.py
                (``templates/bundle_predict.py.txt``); imports no sibling
    serving     ``modelreg serve``: the Open Inference Protocol and MLflow's /invocations
                over one version, following its stage or alias (imports runtime, sources)
    mlflow_format  MLflow's model format: an ONNX version written as an MLflow model, and
                an MLflow model directory registered (imports runtime, sources)
    mlflow_registry  an MLflow registry moved over with MLflow's client (imports
                mlflow_format, sources)
    ui          ``modelreg ui``: the web UI's pages and lifecycle forms (imports serving,
                sources; templates in ``templates/ui/``)

Only this package imports onnx, onnxruntime, skl2onnx, scikit-learn (``sklearn``) or torch
(and starlette and uvicorn in ``serving`` and ``ui``, prometheus-client in ``serving``, jinja2
in ``ui``, mlflow in ``mlflow_registry``).
It imports them, and numpy, only inside the functions that use them, so importing any module
here is cheap. Whether a declared signature contradicts the one inferred from a graph needs no
onnx and is decided in :mod:`modelreg.signatures.contradictions`.

This ``__init__`` imports nothing: import the module you need.
"""
