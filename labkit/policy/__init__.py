"""Admission policies: load Kyverno and policy-controller policies as the cluster would, and
decide admission of Pods and workloads as each engine's webhook does."""

from labkit.policy.load import load_policies
from labkit.policy.match import glob_match, kyverno_normalize, wildcard_match
from labkit.policy.phases import Decision, evaluate
from labkit.policy.podspec import ContainerImage, Engine, extract_images
from labkit.policy.schema import ClusterImagePolicy, ImageValidatingPolicy, KyvernoPolicy, Policy
from labkit.policy.trace import ImageTrace
from labkit.policy.verification import Verifier

__all__ = [
    "ClusterImagePolicy",
    "ContainerImage",
    "Decision",
    "Engine",
    "ImageTrace",
    "ImageValidatingPolicy",
    "KyvernoPolicy",
    "Policy",
    "Verifier",
    "evaluate",
    "extract_images",
    "glob_match",
    "kyverno_normalize",
    "load_policies",
    "wildcard_match",
]
