"""Guard the public namespace so that changes to it are deliberate."""

import imgflow


def test_public_names_unchanged() -> None:
    """`imgflow.__all__` lists exactly the supported names."""
    assert sorted(imgflow.__all__) == [
        "Executor",
        "ImageResult",
        "ImgflowError",
        "ParallelExecutor",
        "Pipeline",
        "PipelineConfig",
        "Reason",
        "RunRequest",
        "RunSummary",
        "SequentialExecutor",
        "Source",
        "Status",
        "Variant",
        "collect_sources",
        "execute",
        "load_config",
        "make_executor",
    ]
    for name in imgflow.__all__:
        assert hasattr(imgflow, name), name
