"""Tests of dataflow.dataset._common: directories, missing files, download, archives."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from _datafiles import assert_reads_its_shard
from _loopback import QuietHandler, serve, serve_directory

from dataflow import check_dataflow
from dataflow._worker_state import worker_context
from dataflow.dataset._common import (
    InMemorySplit,
    dataset_dir,
    download_file,
    extract_tar,
    find_files,
    missing_files_error,
)
from dataflow.worker import WorkerInfo


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


class TestDatasetDir:
    def test_given_dir_is_used_as_is_with_user_expanded(self, monkeypatch, tmp_path):
        monkeypatch.setenv("HOME", str(tmp_path))
        assert dataset_dir("x", "/data/x") == "/data/x"
        assert dataset_dir("x", tmp_path / "y") == str(tmp_path / "y")
        assert dataset_dir("x", "~/z") == str(tmp_path / "z")

    def test_default_is_under_DATAFLOW_DATASETS(self, monkeypatch):
        monkeypatch.setenv("DATAFLOW_DATASETS", "/datasets")
        assert dataset_dir("mnist_data") == "/datasets/mnist_data"

    def test_default_without_the_variable_is_in_the_home_directory(self, monkeypatch, tmp_path):
        monkeypatch.setenv("DATAFLOW_DATASETS", "")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert dataset_dir("mnist_data") == str(tmp_path / ".dataflow" / "datasets" / "mnist_data")

    def test_rejects_a_dir_that_is_not_a_path(self):
        with pytest.raises(TypeError) as info:
            dataset_dir("x", ["a"])
        assert str(info.value) == "dir must be None or a path, got ['a']"


class TestFindFiles:
    def test_returns_full_paths_in_order(self, tmp_path):
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "b").write_bytes(b"")
        (tmp_path / "a").write_bytes(b"")
        paths = find_files("R", str(tmp_path), ["sub/b", "a"], how_to_get="")
        assert paths == [str(tmp_path / "sub" / "b"), str(tmp_path / "a")]

    def test_missing_files_raise_the_missing_files_error(self, tmp_path):
        (tmp_path / "a").write_bytes(b"")
        with pytest.raises(FileNotFoundError) as info:
            find_files("Reader", str(tmp_path), ["a", "b", "c/d"], how_to_get="Get them.")
        assert str(info.value) == str(
            missing_files_error("Reader", str(tmp_path), ["b", "c/d"], "Get them.")
        )
        assert str(info.value) == (
            f"Reader expected these files in '{tmp_path}', which are missing: 'b', 'c/d'. Get them."
        )

    def test_fetch_is_called_with_the_missing_names_only(self, tmp_path):
        (tmp_path / "a").write_bytes(b"")
        calls = []

        def fetch(missing):
            calls.append(missing)
            for name in missing:
                (tmp_path / name).write_bytes(b"")

        paths = find_files("R", str(tmp_path), ["a", "b"], how_to_get="", fetch=fetch)
        assert calls == [["b"]] and paths == [str(tmp_path / "a"), str(tmp_path / "b")]

    def test_fetch_is_not_called_when_nothing_is_missing(self, tmp_path):
        (tmp_path / "a").write_bytes(b"")
        find_files("R", str(tmp_path), ["a"], how_to_get="", fetch=pytest.fail)

    def test_files_still_missing_after_fetch_raise(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing: 'a'. How."):
            find_files("R", str(tmp_path), ["a"], how_to_get="How.", fetch=lambda missing: None)

    def test_a_directory_is_not_a_file(self, tmp_path):
        (tmp_path / "a").mkdir()
        with pytest.raises(FileNotFoundError, match="missing: 'a'"):
            find_files("R", str(tmp_path), ["a"], how_to_get="")


class TestDownloadFile:
    def test_downloads_into_the_directory_under_the_url_file_name(self, tmp_path):
        served = tmp_path / "served"
        served.mkdir()
        (served / "data.bin").write_bytes(bytes(range(256)) * 10)
        with serve_directory(str(served)) as url:
            path = download_file(url + "data.bin", str(tmp_path / "new" / "dir"))
        assert path == str(tmp_path / "new" / "dir" / "data.bin")
        with open(path, "rb") as f:
            assert f.read() == bytes(range(256)) * 10
        assert os.listdir(tmp_path / "new" / "dir") == ["data.bin"]

    def test_http_error_names_the_url_and_leaves_nothing_behind(self, tmp_path):
        with serve_directory(str(tmp_path)) as url:
            target = tmp_path / "target"
            with pytest.raises(OSError) as info:
                download_file(url + "nothing.gz", str(target))
        assert str(info.value).startswith(
            f"could not download {url}nothing.gz to {target / 'nothing.gz'}: HTTP Error 404"
        )
        assert os.listdir(target) == []

    def test_a_body_shorter_than_announced_is_an_error(self, tmp_path):
        class ShortBody(QuietHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"x" * 10)

        with serve(ShortBody) as url, pytest.raises(OSError) as info:
            download_file(url + "short.bin", str(tmp_path))
        assert f"could not download {url}short.bin to " in str(info.value)
        assert os.listdir(tmp_path) == []

    def test_unreachable_server_is_an_error(self, tmp_path):
        with pytest.raises(OSError, match="^could not download http://127.0.0.1:9/f.gz to "):
            download_file("http://127.0.0.1:9/f.gz", str(tmp_path))

    def test_url_without_a_file_name_is_rejected(self, tmp_path):
        with pytest.raises(ValueError) as info:
            download_file("http://127.0.0.1:9/dir/", str(tmp_path))
        assert str(info.value) == "url must end with a file name, got 'http://127.0.0.1:9/dir/'"


def make_tar(path, members):
    """Write a tar.gz holding *members*: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def file_member(name, data=b"hello"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


class TestExtractTar:
    def test_extracts_files_and_folders(self, tmp_path):
        archive = str(tmp_path / "a.tar.gz")
        make_tar(archive, [file_member("folder/one", b"1"), file_member("two", b"22")])
        extract_tar(archive, str(tmp_path / "out"))
        assert (tmp_path / "out" / "folder" / "one").read_bytes() == b"1"
        assert (tmp_path / "out" / "two").read_bytes() == b"22"

    @pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "folder/../../evil"])
    def test_refuses_members_outside_the_directory(self, tmp_path, name):
        archive = str(tmp_path / "a.tar.gz")
        make_tar(archive, [file_member("fine"), file_member(name)])
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(ValueError) as info:
            extract_tar(archive, str(out))
        assert str(info.value) == (
            f"{archive} holds {name!r}, which would not be a plain file or directory "
            f"inside {str(out)!r}; refusing to extract it"
        )
        assert os.listdir(out) == []  # nothing extracted, not even the good member

    def test_refuses_links(self, tmp_path):
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive = str(tmp_path / "a.tar.gz")
        make_tar(archive, [(link, None)])
        with pytest.raises(ValueError, match="'link', which would not be a plain file"):
            extract_tar(archive, str(tmp_path / "out"))


class Pairs(InMemorySplit):
    """An in-memory split of n "images" (arrays [k, k]) with labels 10 * k."""

    def __init__(self, shuffle, n, seed=None):
        self.shuffle, self.seed = shuffle, seed
        self._set_arrays(np.repeat(np.arange(n), 2).reshape(n, 2), np.arange(n) * 10)


class TestInMemorySplit:
    def test_yields_converted_images_and_labels_in_order(self):
        df = Pairs(False, 3)
        df.reset_state()
        out = [[image.tolist(), label] for image, label in df]
        assert out == [[[0, 0], 0], [[1, 1], 10], [[2, 2], 20]] and len(df) == 3

    @pytest.mark.parametrize("shuffle", [True, False])
    def test_keeps_the_dataflow_contract(self, shuffle):
        check_dataflow(lambda: Pairs(shuffle, 5))

    @pytest.mark.parametrize("n", [4, 10])
    def test_each_worker_reads_only_its_shard(self, n):
        assert_reads_its_shard(lambda shuffle: Pairs(shuffle, n, seed=0))

    def test_a_shuffled_shard_is_shuffled_anew_every_pass(self):
        df = Pairs(True, 12, seed=3)
        with worker_context(WorkerInfo(1, 2, None, True)):
            df.reset_state()
            passes = [[label for _, label in df] for _ in range(6)]
        assert all(sorted(p) == list(range(60, 120, 10)) for p in passes)  # k = 6 .. 11
        assert len({tuple(p) for p in passes}) > 1

    def test_shuffle_permutes_with_the_seed(self):
        def labels(seed):
            df = Pairs(True, 20, seed=seed)
            df.reset_state()
            return [label for _, label in df]

        assert labels(0) == labels(0) != labels(1)
        assert sorted(labels(0)) == list(range(0, 200, 10))
