"""One lab, one interface, any backend: ``Lab.start(backend="embedded" | "native" | "kind")``.

    lab = labkit.Lab.start()                  # registry + webhook on loopback, in ~/.labkit
    lab.apply("policy.yaml")
    print(lab.create(pod).message)            # as kubectl would print it
    lab.stop()
"""

from labkit.lab.base import AdmissionResult, Lab, PrivateRegistry, RegistryInfo, pod
from labkit.lab.factory import BACKENDS, connect, start  # also registers Lab.start / Lab.connect
from labkit.lab.stale import StalePolicy
from labkit.lab.state import LabHome

__all__ = ["BACKENDS", "AdmissionResult", "Lab", "LabHome", "PrivateRegistry", "RegistryInfo", "StalePolicy",
           "connect", "pod", "start"]
