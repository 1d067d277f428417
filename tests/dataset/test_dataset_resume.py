"""Resuming the dataset readers: a pass resumed from the state after position
p reads only the images after it (counted, never timed), on small files
written in the real formats. (check_dataflow in each reader's tests also runs
check_resume.)"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_dataset_mnist import make_data, write_split
from test_dataset_tinyimagenet import make_tiny

from dataflow import MapDataComponent
from dataflow.dataset import Mnist, TinyImageNet
from dataflow.testing import check_resume

P = 7


def resumed_at(make, p):
    """A reader from *make()* loaded with the state after *p* datapoints, and
    the datapoints the interrupted pass had left."""
    original = make()
    original.reset_state()
    it = iter(original)
    for _ in range(p):
        next(it)
    state = json.loads(json.dumps(original.state_dict()))
    rest = list(it)
    resumed = make()
    resumed.reset_state()
    resumed.load_state_dict(state)
    return resumed, rest


def same(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y)) for x, y in zip(a, b)
    )


class TestInMemorySplit:
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_converts_only_the_images_after_the_position(self, tmp_path, shuffle):
        images, labels = make_data(12, 0)
        write_split(str(tmp_path), "train", images, labels)
        df, rest = resumed_at(lambda: Mnist("train", shuffle=shuffle, dir=str(tmp_path)), P)
        converted = []
        convert = df._convert
        df._convert = lambda image: converted.append(1) or convert(image)
        assert same(list(df), rest)
        assert len(converted) == 12 - P

    def test_a_mapped_reader_resumes_exactly(self, tmp_path):
        images, labels = make_data(12, 0)
        write_split(str(tmp_path), "train", images, labels)
        check_resume(lambda: MapDataComponent(Mnist("train", dir=str(tmp_path)), np.flipud, 0))


class TestFileListReader:
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_decodes_only_the_files_after_the_position(self, tmp_path, monkeypatch, shuffle):
        pytest.importorskip("cv2")
        make_tiny(str(tmp_path))
        df, rest = resumed_at(lambda: TinyImageNet(str(tmp_path), "train", shuffle=shuffle), 4)
        import cv2

        read = []
        imread = cv2.imread
        monkeypatch.setattr(cv2, "imread", lambda path, *a: read.append(path) or imread(path, *a))
        assert same(list(df), rest)
        assert len(read) == len(df) - 4 == 2
        assert all(os.path.isfile(path) for path in read)
