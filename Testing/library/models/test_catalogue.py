"""The model catalogue, offline: the shipped one, one from a file, from $BRATSUNET_MODEL_CATALOGUE and from an http
URL on a server on 127.0.0.1 started here; every bad catalogue is one ConfigError line naming it (and the entry)."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from file_server import file_server

from BratsUNetLib.errors import ConfigError
from BratsUNetLib.models.catalogue import (
    CATALOGUE_ENV,
    MAX_CATALOGUE_BYTES,
    SHIPPED_CATALOGUE,
    find_entry,
    load_catalogue,
)


@pytest.fixture
def server():
    with file_server() as httpd:
        yield httpd


@pytest.fixture(autouse=True)
def no_catalogue_from_the_environment(monkeypatch):
    monkeypatch.delenv(CATALOGUE_ENV, raising=False)  # the tests say which catalogue they read


def entry(**fields) -> dict:
    return {"name": "small", "url": "https://example.org/small.zip", "format": "monai-bundle", "sha256": None,
            **fields}


def catalogue_text(*entries: dict) -> str:
    return json.dumps({"models": list(entries)})


def assert_one_line(error: pytest.ExceptionInfo, *names: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message


# --------------------------------------------------------------------------------------------------- good ones

def test_the_shipped_catalogue_lists_the_monai_brats_bundle():
    (brats,) = [item for item in load_catalogue() if item.name == "brats_mri_segmentation"]
    assert brats.format == "monai-bundle" and brats.licence == "Apache-2.0"
    assert brats.url == ("https://github.com/Project-MONAI/model-zoo/releases/download/hosting_storage_v1/"
                         "brats_mri_segmentation_v0.5.2.zip")
    assert brats.sha256 is None and brats.md5 is None  # not published: recorded at the first download
    assert brats.channels == ("t1ce", "t1", "t2", "flair")
    assert brats.weights["path"] == "models/model.pt"
    assert brats.weights["md5"] == "870e677b782a5184cbc48db1456b78e8"
    assert brats.accuracy["WT"] == 0.903 and brats.label_scheme == "brats2020"
    assert "1810.11654" in brats.citation


def test_the_shipped_catalogue_is_read_when_nothing_else_is_given():
    assert load_catalogue() == load_catalogue(SHIPPED_CATALOGUE)


def test_a_catalogue_file_keeps_unknown_keys_and_normalises_hashes(tmp_path):
    path = tmp_path / "catalogue.json"
    path.write_text(catalogue_text(entry(title="Small", md5="ABCDEF0123456789" * 2, future_key=1),
                                   entry(name="other.v2", format="bratsunet", url="http://example.org/o.pth")))
    small, other = load_catalogue(path)
    assert small.title == "Small" and small.extra == {"future_key": 1}
    assert small.md5 == "abcdef0123456789" * 2
    assert other.name == "other.v2" and other.format == "bratsunet" and other.weights is None


def test_the_catalogue_comes_from_the_environment_or_a_url(server, tmp_path, monkeypatch):
    text = catalogue_text(entry(title="Small"))
    (tmp_path / "catalogue.json").write_text(text)
    monkeypatch.setenv(CATALOGUE_ENV, str(tmp_path / "catalogue.json"))
    (small,) = load_catalogue()
    assert small.title == "Small"
    server.files["/catalogue.json"] = text.encode()
    monkeypatch.setenv(CATALOGUE_ENV, f"{server.url}/catalogue.json")
    assert find_entry("small", load_catalogue()).url == "https://example.org/small.zip"
    assert server.ranges == [("/catalogue.json", None)]


def test_an_unknown_name_lists_the_names_there_are():
    entries = load_catalogue()
    with pytest.raises(ConfigError, match="No model called 'large'.*its models: brats_mri_segmentation") as error:
        find_entry("large", entries)
    assert_one_line(error)


# ---------------------------------------------------------------------------------------------------- bad ones

@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),  # deeper than the parser goes
    (json.dumps({"models": {}}), "must be an object"),
    (json.dumps([entry()]), "must be an object"),
    (catalogue_text("small"), "entry 1 is not an object"),
    (catalogue_text(entry(format="pickle")), "model 'small': format must be one of bratsunet, monai-bundle"),
    (catalogue_text(entry(format=None)), "model 'small': format must be one of"),
    (catalogue_text(entry(), entry()), "lists small more than once"),
    (catalogue_text(entry(name="../../etc")), "entry 1: name '../../etc' must be"),
    (catalogue_text(entry(name="Small")), "entry 1: name 'Small' must be"),
    (catalogue_text(entry(name="x" * 65)), "must be"),
    (catalogue_text({"url": "https://example.org/a.zip", "format": "bratsunet"}), "entry 1: name None must be"),
    (catalogue_text(entry(url=None)), "model 'small': url must be an http(s) URL"),
    (catalogue_text(entry(url="file:///etc/passwd")), "model 'small': url must be an http(s) URL"),
    (catalogue_text(entry(sha256="abc")), "model 'small': sha256 must be 64 hexadecimal digits"),
    (catalogue_text(entry(md5="g" * 32)), "model 'small': md5 must be 32 hexadecimal digits"),
    (catalogue_text(entry(weights={"url": "https://example.org/w.pt", "md5": "0" * 31})),
     "model 'small', weights: md5 must be 32 hexadecimal digits"),
    (catalogue_text(entry(weights={"path": "models/model.pt"})), "weights must be an object with an http(s) url"),
    (catalogue_text(entry(size_bytes=-1)), "size_bytes must be a whole number"),
    (catalogue_text(entry(channels="t1")), "channels must be a list of names"),
    (catalogue_text(entry(accuracy=[0.9])), "accuracy must be an object"),
])
def test_a_bad_catalogue_is_one_line(tmp_path, content, message):
    path = tmp_path / "catalogue.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_catalogue(path)
    assert_one_line(error, str(path))


def test_a_catalogue_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "catalogue.json"
    path.write_bytes(b'{"models": [{"name": "\xff"}]}')
    with pytest.raises(ConfigError, match="not UTF-8") as error:
        load_catalogue(path)
    assert_one_line(error, str(path))


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "catalogue.json"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)  # 1 GB, sparse: refused by its size, which costs nothing to look up
    with pytest.raises(ConfigError, match="larger than a catalogue can be") as error:
        load_catalogue(path)
    assert_one_line(error, str(path))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_or_a_folder_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "catalogue.json"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ConfigError, match="named pipe") as error:
        load_catalogue(fifo)
    assert_one_line(error, str(fifo))
    with pytest.raises(ConfigError, match="is a folder") as error:
        load_catalogue(tmp_path)
    assert_one_line(error, str(tmp_path))


def test_a_missing_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOGUE_ENV, str(tmp_path / "nowhere.json"))
    with pytest.raises(ConfigError, match="does not exist") as error:
        load_catalogue()
    assert_one_line(error, "nowhere.json")


def test_a_url_that_serves_too_much_or_nothing_is_one_line(server):
    server.files["/big.json"] = b" " * (MAX_CATALOGUE_BYTES + 1)
    with pytest.raises(ConfigError, match="larger than a catalogue can be") as error:
        load_catalogue(f"{server.url}/big.json")
    assert_one_line(error, f"{server.url}/big.json")
    with pytest.raises(ConfigError, match="cannot be fetched.*404") as error:
        load_catalogue(f"{server.url}/gone.json")
    assert_one_line(error, f"{server.url}/gone.json")


def test_a_bad_catalogue_at_a_url_names_the_url(server):
    server.files["/bad.json"] = catalogue_text(entry(format="exe")).encode()
    with pytest.raises(ConfigError, match="model 'small': format must be") as error:
        load_catalogue(f"{server.url}/bad.json")
    assert_one_line(error, f"{server.url}/bad.json")


def test_nothing_of_a_catalogue_is_run(tmp_path):
    # A catalogue is data: an entry naming Python code is only a string, and loading imports nothing new.
    before = set(sys.modules)
    path = tmp_path / "catalogue.json"
    path.write_text(catalogue_text(entry(title="__import__('os').system('false')", loader="os.system")))
    (small,) = load_catalogue(path)
    assert small.title.startswith("__import__") and small.extra == {"loader": "os.system"}
    assert set(sys.modules) - before == set()
