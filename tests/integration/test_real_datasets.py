"""Every public dataset in the data folder parses with the counts its SOURCE.md records."""

from __future__ import annotations

import pytest

from core.readers import ReadOptions, read_interactions

# (folder, file, options, users, items, interactions), the counts as published in SOURCE.md.
DATASETS = [
    ("ml-100k", "u.data", ReadOptions(), 943, 1682, 100_000),
    ("amazon-beauty", "Beauty.txt", ReadOptions(), 22_363, 12_101, 198_502),
    ("amazon-sports", "Sports_and_Outdoors.txt", ReadOptions(), 35_598, 18_357, 296_337),
    ("amazon-toys", "Toys_and_Games.txt", ReadOptions(), 19_412, 11_924, 167_597),
    ("amazon-video-sasrec", "Video.txt", ReadOptions(), 31_013, 23_715, 287_107),
    (
        "diginetica-sample",
        "sample_train-item-views.csv",
        ReadOptions(user_column="session_id", timestamp_column="timeframe"),
        2_986,
        7_139,
        12_391,
    ),
]


@pytest.mark.parametrize(
    ("folder", "file_name", "options", "users", "items", "interactions"),
    DATASETS,
    ids=[row[0] for row in DATASETS],
)
def test_dataset_counts_match_source(
    data_dir, folder, file_name, options, users, items, interactions
):
    path = data_dir / folder / file_name
    if not path.is_file():
        pytest.skip(f"{path} is not in the data folder")
    dataset = read_interactions(path, options).dataset

    assert dataset.n_users == users
    assert dataset.n_items == items
    assert dataset.n_interactions == interactions


def test_all_data_folders_are_covered(data_dir):
    folders = {path.name for path in data_dir.iterdir() if (path / "SOURCE.md").is_file()}

    assert folders <= {row[0] for row in DATASETS}, "a dataset folder has no expected counts here"


def test_ml100k_sequences_match_plain_python(data_dir):
    path = data_dir / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.skip(f"{path} is not in the data folder")
    events: dict[str, list[tuple[int, int, str]]] = {}
    for position, line in enumerate(path.read_text().splitlines()):
        user, item, _rating, timestamp = line.split("\t")
        events.setdefault(user, []).append((int(timestamp), position, item))
    # Sorting (timestamp, file position) pairs orders by time with ties in file order.
    expected = {user: [item for _, _, item in sorted(rows)] for user, rows in events.items()}

    result = read_interactions(path)
    dataset = result.dataset
    actual = {
        str(dataset.user_labels[user]): [
            str(dataset.item_labels[item - 1]) for item in dataset.sequence(user)
        ]
        for user in range(dataset.n_users)
    }

    assert result.detected["timestamp_column"] == 3
    assert list(actual) == list(expected)
    assert actual == expected


def test_diginetica_sessions_sorted_by_timeframe(data_dir):
    path = data_dir / "diginetica-sample" / "sample_train-item-views.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not in the data folder")
    dataset = read_interactions(
        path, ReadOptions(user_column="session_id", timestamp_column="timeframe")
    ).dataset

    for user in range(dataset.n_users):
        times = dataset.timestamps[dataset.offsets[user] : dataset.offsets[user + 1]]
        assert (times[1:] >= times[:-1]).all(), (
            f"session {dataset.user_labels[user]} is out of order"
        )
