"""FREE (CVPR 2024): data-free meta-learning from a pool of task-specific classifiers.

FIVE (:mod:`.inversion`, :mod:`.generator`, or the pen-stroke prior of :mod:`.strokes`) recovers
tasks from teachers with a meta-learned generator; :mod:`.prior_distill` first teaches the learner the
teacher ensemble's image similarities on samples of the prior; BELL (:mod:`.align`, :mod:`.episodic`, :mod:`.learners`) trains a few-shot learner on
them; :mod:`.memory` keeps the recovered tasks; :mod:`.teachers` draws and loads the teachers;
:mod:`.trainer` runs the loop (on several processes under torchrun: :mod:`.distributed`);
:mod:`.fewshot` scores a learner on real N-way K-shot episodes.
"""

from freehub.free.align import alignment_gradient
from freehub.free.config import MetaTrainConfig
from freehub.free.fewshot import FewShotResult, evaluate_fewshot
from freehub.free.generator import Generator
from freehub.free.inversion import InversionSettings, MetaGenerator, RecoveredTask, bn_statistics_distance, recover_task
from freehub.free.learners import Conv4, LearnerSpec, MetaLearner, build_learner, load_learner, save_learner
from freehub.free.losses import kl_divergence
from freehub.free.memory import TaskMemory, class_key
from freehub.free.prior_distill import PriorDistillResult, PriorDistillSettings, distil_prior
from freehub.free.strokes import StrokeGenerator
from freehub.free.teachers import TeacherCache, TeacherInfo, TeacherPool, draw_meta_batch
from freehub.free.trainer import MetaTrainResult, meta_train

__all__ = [
    "Conv4",
    "FewShotResult",
    "Generator",
    "InversionSettings",
    "LearnerSpec",
    "MetaGenerator",
    "MetaLearner",
    "MetaTrainConfig",
    "MetaTrainResult",
    "PriorDistillResult",
    "PriorDistillSettings",
    "RecoveredTask",
    "StrokeGenerator",
    "TaskMemory",
    "TeacherCache",
    "TeacherInfo",
    "TeacherPool",
    "alignment_gradient",
    "bn_statistics_distance",
    "build_learner",
    "class_key",
    "distil_prior",
    "draw_meta_batch",
    "evaluate_fewshot",
    "kl_divergence",
    "load_learner",
    "meta_train",
    "recover_task",
    "save_learner",
]
