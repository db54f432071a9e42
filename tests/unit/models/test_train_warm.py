import numpy as np
import torch

from models.data.dataset import IdMap
from models.towers.model import TwoTower
from models.train.config import TrainConfig
from models.train.warm import warm_start_from


def make(n_items: int, seed: int) -> TwoTower:
    torch.manual_seed(seed)
    return TwoTower(TrainConfig(tower="gru", dim=8).tower_spec(n_items, 0))


def test_item_rows_follow_their_ids_and_other_weights_are_copied():
    old, new = make(3, 0), make(4, 1)
    old_items, new_items = IdMap(("a", "b", "c")), IdMap(("c", "x", "a", "y"))
    fresh_x = new.item_tower.id_embedding.weight[2].clone()
    report = warm_start_from(old, old_items, new_items)(new)
    emb_old, emb_new = old.item_tower.id_embedding.weight, new.item_tower.id_embedding.weight
    assert torch.equal(emb_new[1], emb_old[3])  # "c"
    assert torch.equal(emb_new[3], emb_old[1])  # "a"
    assert torch.equal(emb_new[2], fresh_x)  # "x" is new: keeps its own row
    for name, tensor in new.user_tower.state_dict().items():
        if "item_tower" not in name:  # the GRU and its projections
            assert torch.equal(tensor, old.user_tower.state_dict()[name]), name
    assert report["items_kept"] == 2 and report["copied"] > 1


def test_warm_start_changes_nothing_it_cannot_match():
    old = TwoTower(TrainConfig(tower="gru", dim=8).tower_spec(3, 0))
    new = TwoTower(TrainConfig(tower="gru", dim=16).tower_spec(3, 0))  # other dimension
    before = {k: v.clone() for k, v in new.state_dict().items()}
    report = warm_start_from(old, IdMap(("a", "b", "c")), IdMap(("d", "e", "f")))(new)
    after = new.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [] and report["items_kept"] == 0
    assert np.isfinite(new.item_tower.id_embedding.weight.detach().numpy()).all()
