"""The recorded disk layout (label io.dockerify.disk-layout): one parser, one serialiser, a JSON
round trip that keeps the bytes builds have always written, and strict refusals naming the field."""

from __future__ import annotations

import json

import pytest

from dockerify.errors import CorruptInput
from dockerify.oci.model import canonical_json
from dockerify.sources.disklayout import LAYOUT_LABEL, DiskLayout, ExtRecord, FatRecord, PartitionRecord

# Labels as builds of the fixtures pi-arm64.img (MBR) and amd64-gpt.img (GPT) wrote them before
# the typed model: its serialiser must give these bytes back, or rebuilt images change digest.
PI_LABEL = (
    '{"disk_id":"0x6c1f2a10","partitions":[{"bootable":false,"fs":{"cluster_size":512,"label":"BOOTFS",'
    '"size":67108864,"type":"fat32","volume_id":"5DF2A7C1"},"mountpoint":"/boot/firmware","name":"",'
    '"number":1,"partuuid":"6c1f2a10-01","size":67108864,"start":4194304,"type":"0c"},{"bootable":false,'
    '"fs":{"block_size":4096,"features":["64bit","dir_index","dir_nlink","ext_attr","extent","extra_isize",'
    '"filetype","flex_bg","has_journal","huge_file","large_file","metadata_csum","resize_inode",'
    '"sparse_super"],"inode_size":256,"label":"rootfs","size":104857600,"type":"ext4",'
    '"uuid":"8346b092-46af-58b7-b1e7-b0b53158588b"},"mountpoint":"/","name":"","number":2,'
    '"partuuid":"6c1f2a10-02","size":104857600,"start":71303168,"type":"83"}],"size":176160768,'
    '"table_type":"dos"}'
)
GPT_LABEL = (
    '{"disk_id":"569275d0-d192-57af-ab49-8e480985cd44","partitions":[{"bootable":false,"fs":'
    '{"cluster_size":512,"label":"BOOTFS","size":67108864,"type":"fat32","volume_id":"7C3E5D21"},'
    '"mountpoint":"/boot/firmware","name":"boot","number":1,"partuuid":"ef283712-9690-56fd-b071-267dab6d6a57",'
    '"size":67108864,"start":4194304,"type":"c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},{"bootable":false,'
    '"fs":{"block_size":4096,"features":["64bit","dir_index","dir_nlink","ext_attr","extent","extra_isize",'
    '"filetype","flex_bg","has_journal","huge_file","large_file","metadata_csum","resize_inode",'
    '"sparse_super"],"inode_size":256,"label":"rootfs","size":104857600,"type":"ext4",'
    '"uuid":"dd54dbf8-e230-5a9c-9fb4-f8b077830f73"},"mountpoint":"/","name":"root","number":2,'
    '"partuuid":"f8b6c89a-4791-5c6e-b451-7cd961d16dad","size":104857600,"start":71303168,'
    '"type":"4f68bce3-e8cd-4db1-96e7-fbcaf984b709"}],"size":177209344,"table_type":"gpt"}'
)

EXTRA = DiskLayout(
    "dos",
    "0x12345678",
    1 << 30,
    (
        PartitionRecord(
            1,
            1 << 22,
            1 << 26,
            "0c",
            "12345678-01",
            "",
            True,
            FatRecord("fat16", "ABCD1234", "B", 2048, 1 << 26),
            "/boot",
        ),
        PartitionRecord(
            2,
            1 << 27,
            1 << 28,
            "83",
            "12345678-02",
            "",
            False,
            ExtRecord("ext2", "u", "", (), 1024, 128, 1 << 28),
            "/",
        ),
        PartitionRecord(3, 1 << 29, 1 << 20, "82", "12345678-03", "", False),  # swap: no filesystem read
    ),
)
BARE = DiskLayout("none", "", 1 << 24, (PartitionRecord(0, 0, 1 << 24, "", "", "", False, FatRecord("fat32", "0", "", 512, 1 << 24), "/"),))  # fmt: skip


@pytest.mark.parametrize("label", [PI_LABEL, GPT_LABEL])
def test_recorded_labels_come_back_byte_for_byte(label: str) -> None:
    layout = DiskLayout.from_json(label)
    assert canonical_json(layout.to_json()).decode() == label
    assert DiskLayout.from_json(label.encode()) == layout == DiskLayout.from_json(json.loads(label))
    root = layout.partitions[1]
    assert isinstance(root.fs, ExtRecord) and root.fs.features[0] == "64bit" and root.mountpoint == "/"


@pytest.mark.parametrize("layout", [EXTRA, BARE])
def test_json_round_trip(layout: DiskLayout) -> None:
    text = canonical_json(layout.to_json())
    assert DiskLayout.from_json(text) == layout
    assert canonical_json(DiskLayout.from_json(text).to_json()) == text


def test_a_partition_without_a_filesystem_is_recorded_as_an_empty_object() -> None:
    assert EXTRA.to_json()["partitions"][2]["fs"] == {}  # as builds have always written it
    assert DiskLayout.from_json(canonical_json(EXTRA.to_json())).partitions[2].fs is None


def _pi(**changes: object) -> dict:
    layout = json.loads(PI_LABEL)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = layout
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return layout


_DROP = object()

MALFORMED = [
    ("[1, 2]", "the layout: expected a JSON object, got a list"),
    ("{not json", "not valid JSON"),
    (_pi(size=-5), "size: -5 is negative"),
    (_pi(size="big"), "size: expected an integer, got a string ('big')"),
    (_pi(size=1.5), "size: expected an integer, got a number (1.5)"),
    (_pi(table_type="apm"), "table_type: unknown partition table type 'apm'"),
    (_pi(disk_id=None), "disk_id: expected a string, got null"),
    (_pi(partitions={}), "partitions: expected a list, got an object"),
    (_pi(partitions=[3]), "partitions[0]: expected a JSON object, got an integer (3)"),
    (_pi(partitions__0__start=-512), "partitions[0].start: -512 is negative"),
    (_pi(partitions__1__number=True), "partitions[1].number: expected an integer, got true"),
    (_pi(partitions__0__bootable=1), "partitions[0].bootable: expected true or false, got an integer (1)"),
    (_pi(partitions__1__partuuid=_DROP), "partitions[1].partuuid: missing"),
    (_pi(partitions__1__colour="red"), "partitions[1].colour: unknown field"),
    (_pi(partitions__0__fs=[]), "partitions[0].fs: expected an object, got a list"),
    (_pi(partitions__0__fs__type="ntfs"), "partitions[0].fs.type: unknown filesystem type 'ntfs'"),
    (_pi(partitions__0__fs__cluster_size=0), "partitions[0].fs.cluster_size: 0 is not positive"),
    (_pi(partitions__1__fs__uuid=_DROP), "partitions[1].fs.uuid: missing"),
    (
        _pi(partitions__1__fs__features="64bit"),
        "partitions[1].fs.features: expected a list of strings, got a string",
    ),
    (_pi(partitions__1__fs__features=["64bit", 7]), "partitions[1].fs.features: expected a list of strings"),
    (_pi(partitions__1__fs__block_size=-4096), "partitions[1].fs.block_size: -4096 is not positive"),
    (_pi(partitions__1__fs__volume_id="x"), "partitions[1].fs.volume_id: unknown field"),
    (_pi(partitions=_DROP), "partitions: missing"),
]


@pytest.mark.parametrize(("data", "problem"), MALFORMED, ids=[m[1][:40] for m in MALFORMED])
def test_malformed_labels_are_refused_naming_the_field(data: object, problem: str) -> None:
    where = f"oci:/x:v1: label {LAYOUT_LABEL}"
    with pytest.raises(CorruptInput) as err:
        DiskLayout.from_json(data if isinstance(data, str) else json.dumps(data), where)
    assert err.value.message.startswith(f"{where}: {problem}"), err.value.message
    assert "\n" not in err.value.message and err.value.hint
