"""Command-line tools around tracker_node: bag_from_video, bag_replay, select_target, demo."""
