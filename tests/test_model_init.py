"""An untrained avatar of may_5s already looks like her: where the video shows her, in her colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar.model.config import InitConfig
from avatar.model.frame import render_frame
from avatar.model.gaussians import AvatarGaussians
from avatar.model.init import init_avatar
from preprocess.segmentation import LABEL_BACKGROUND, LABEL_EYES, LABEL_HEAD, LABEL_MOUTH
from preprocess.subject import Subject

pytestmark = pytest.mark.slow


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def subject(may_subject) -> Subject:
    return Subject(may_subject)


@pytest.fixture(scope="module")
def model(subject):
    return init_avatar(subject)


def render(model, subject, i, background=True):
    t = subject.tracking
    plate = torch.from_numpy(subject.background().astype(np.float32) / 255) if background else None
    with torch.no_grad():
        return render_frame(model, torch.from_numpy(t.verts[i]), torch.from_numpy(t.viewmats[i]),
                            torch.from_numpy(t.K(subject.size)), subject.size, plate, backend="cpu")


def test_groups_and_determinism(model, subject):
    cfg = InitConfig()
    assert len(model.face) == 852 * cfg.per_triangle and model.face.parent.max() == 851
    assert len(model.head) == cfg.head_gaussians and len(model.torso) == cfg.torso_gaussians
    again = init_avatar(subject)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert torch.equal(a, b), name
    other = init_avatar(subject, InitConfig(seed=1))
    assert not torch.equal(other.face.means, model.face.means)


def test_untrained_render_covers_the_person_in_her_colours(model, subject):
    plate = torch.from_numpy(subject.background().astype(np.float32) / 255)
    for i in subject.val_frames[::4]:  # frames the initialisation never saw
        real = torch.from_numpy(subject.frame(i).astype(np.float32) / 255)
        rgb, alpha = render(model, subject, i)[:2]
        # 25.8-26.8 dB measured; the background plate alone scores 10.7
        assert psnr(rgb, real) > psnr(plate, real) + 10, i
        person = subject.labels(i) != LABEL_BACKGROUND
        covered = alpha[..., 0].numpy() > 0.5
        assert (person & covered).sum() / (person | covered).sum() > 0.93, i  # measured 0.953-0.958


def test_face_gaussians_land_on_the_face(model, subject):
    only_face = init_avatar(subject, InitConfig(head_gaussians=0, torso_gaussians=0, mouth_gaussians=0))
    i = int(subject.val_frames[0])
    alpha = render(only_face, subject, i, background=False).alpha
    covered = alpha[..., 0].numpy() > 0.5
    face = np.isin(subject.labels(i), (LABEL_HEAD, LABEL_MOUTH, LABEL_EYES))
    assert covered.mean() > 0.05 and face[covered].mean() > 0.97


def test_lower_teeth_follow_the_jaw_and_upper_teeth_the_skull(model, subject):
    mouth = model.mouth
    assert len(mouth) > 0 and set(mouth.jaw.unique().tolist()) == {0.0, 1.0}
    t = subject.tracking
    i = int(np.argmax(t.mouth_open))  # the widest-open frame
    verts = torch.from_numpy(t.verts[i])
    offset = model.jaw_offset(verts)
    assert offset[1] > 0.0005  # the jaw drops (y is down), metres: 1.2 mm below the clip's mean shape
    with torch.no_grad():
        means = model.place(verts, torch.from_numpy(t.viewmats[i]))[0]
    start = len(model.face)
    placed = means[start:start + len(mouth)]
    lower, upper = mouth.jaw == 1, mouth.jaw == 0
    assert torch.allclose(placed[upper], mouth.means[upper])
    assert torch.allclose(placed[lower], mouth.means[lower] + offset)
    # they start just behind the lips: between the lips' depth and 3 cm behind, in the head frame
    lips_z = float(verts[[13, 14], 2].mean())
    assert ((placed[:, 2] > lips_z) & (placed[:, 2] < lips_z + 0.03)).float().mean() > 0.9


def test_compiled_placement_matches_the_pytorch_one(model, subject):
    """Rendering without gradients places the Gaussians with the compiled kernel (cuda_ext/csrc/place.cpp);
    training places them in PyTorch. Same numbers, including after a parameter changes (the kernel's
    constants are cached until then)."""
    import copy

    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # exercise every term: unnormalised quaternions, partial following, the jaw
        for group in m.groups():
            group.quats.mul_(1.0 + torch.rand(len(group), 1, generator=g))
            group.color_basis.copy_(0.3 * torch.randn(group.color_basis.shape, generator=g))  # pose-dependent colours
        m.torso.follow_logits.copy_(torch.randn(len(m.torso), generator=g))
        m.mouth.jaw.copy_(torch.rand(len(m.mouth), generator=g))
    t = subject.tracking

    def both(i):
        verts, viewmat = torch.from_numpy(t.verts[i]), torch.from_numpy(t.viewmats[i])
        shoulders = torch.eye(3, 4) + torch.tensor([[0.02, 0.01, 0, 0.01], [0, -0.03, 0, -0.02], [0, 0, 0, 0]]) * (i % 2)
        with torch.no_grad():
            compiled = m.place(verts, viewmat, torso=shoulders)
        with torch.enable_grad():
            reference = [x.detach() for x in m.place(verts, viewmat, torso=shoulders)]
        return compiled, reference

    for i in (0, 1, len(t.verts) // 2, len(t.verts) - 1):
        compiled, reference = both(i)
        for name, a, b in zip(("means", "quats", "scales", "opacities", "colors"), compiled, reference):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5), (name, (a - b).abs().max())
    before = both(0)[0][0].clone()
    with torch.no_grad():
        m.face.means.add_(0.05)  # in place: the cached constants must notice
    compiled, reference = both(0)
    assert not torch.allclose(compiled[0], before) and torch.allclose(compiled[0], reference[0], atol=1e-5)


def test_colours_follow_the_pose_through_the_colour_basis(model, subject):
    """A Gaussian's colour is sigmoid(logit + basis @ the frame's normalised pose code): with no basis (a new
    avatar, or one fitted before the basis existed) colours do not depend on the pose; with one, a torso
    basis on the shoulders' code changes the torso's colours with the shoulders' motion and nothing else's."""
    import copy

    t = subject.tracking
    verts, viewmat = torch.from_numpy(t.verts[0]), torch.from_numpy(t.viewmats[0])
    leaning = torch.eye(3, 4)
    leaning[0, 0] = 1.05  # the shoulders' map, 5% wider
    # the code is normalised by the training frames' range, measured at init
    assert torch.all(model.pose_scale > 0) and not torch.equal(model.pose_mean, torch.zeros_like(model.pose_mean))
    with torch.no_grad():
        assert torch.equal(model.place(verts, viewmat)[4], model.place(verts, viewmat, torso=leaning)[4])
        m = copy.deepcopy(model)
        m.torso.color_basis[:, :, 6] = 1.0  # entry 6: the shoulders' x scale minus 1
        still, leant = m.place(verts, viewmat)[4], m.place(verts, viewmat, torso=leaning)[4]
    n = len(m.torso)
    assert torch.equal(still[:-n], leant[:-n])
    assert bool((leant[-n:] > still[-n:]).all())  # a positive basis brightens as the code rises
    # an older avatar's state, without a basis or a pose range, loads as before: colours of the logits alone
    state = {k: v for k, v in m.state_dict().items() if not k.endswith("color_basis") and not k.startswith("pose_")}
    old = AvatarGaussians.from_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(old.place(verts, viewmat, torso=leaning)[4], model.place(verts, viewmat)[4])
