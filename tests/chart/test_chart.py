"""Invariants of the rds-csi chart, asserted on `helm template` output.

    python3 tests/chart/test_chart.py HELM CHART RENDERED_DIR

RENDERED_DIR holds <case>.yaml for each values file in CHART/ci (rendered by
scripts/chart-test.sh). Values files under tests/chart/refused/ must each be refused by the
chart's schema (or templates), with the reason their first comment line names.
Stdlib and PyYAML only.
"""

import os
import subprocess
import sys
import unittest

import yaml

HELM, CHART, RENDERED = sys.argv[1:4] if len(sys.argv) >= 4 else (None, None, None)
REFUSED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "refused")
DRIVER = "rds.csi.srvlab.io"


def load(case):
    with open(os.path.join(RENDERED, case + ".yaml")) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def one(docs, kind, name_suffix=""):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"want one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def container(pod_spec, name):
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def args_of(c):
    return {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else True) for a in c.get("args", [])}


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def rules(docs, kind, suffix):
    """(apiGroup, resource) -> set of verbs of a ClusterRole or Role."""
    out = {}
    for rule in one(docs, kind, suffix)["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


CASES = sorted(f[: -len("-values.yaml")] for f in os.listdir(os.path.join(CHART, "ci"))) if CHART else []


class EveryCase(unittest.TestCase):
    """What must hold whatever the values."""

    def test_node_daemonset(self):
        for case in CASES:
            with self.subTest(case=case):
                docs = load(case)
                spec = one(docs, "DaemonSet", "-node")["spec"]["template"]["spec"]
                # NVMe/TCP connections live in the host's network namespace (survive restarts).
                self.assertIs(spec.get("hostNetwork"), True)
                self.assertEqual(spec.get("dnsPolicy"), "ClusterFirstWithHostNet")
                self.assertEqual(spec.get("priorityClassName"), "system-node-critical")
                self.assertIn({"operator": "Exists"}, spec.get("tolerations", []))
                plugin = container(spec, "rds-csi")
                self.assertIs(plugin["securityContext"].get("privileged"), True)
                self.assertEqual(plugin["args"][0], "node")
                mounts = {m["name"]: m for m in plugin["volumeMounts"]}
                volumes = {v["name"]: v for v in spec["volumes"]}
                kubelet = mounts["kubelet-dir"]
                self.assertEqual(kubelet.get("mountPropagation"), "Bidirectional")
                self.assertEqual(volumes["kubelet-dir"]["hostPath"]["path"], kubelet["mountPath"])
                for path in ["/dev", "/sys", "/etc/nvme"]:
                    self.assertIn(path, {m["mountPath"] for m in plugin["volumeMounts"]}, path)
                self.assertTrue(mounts["etc-nvme"].get("readOnly"))
                # The state directory lies on a host path that outlives the pod.
                state = args_of(plugin)["--state-dir"]
                host_paths = [m["mountPath"] for m in plugin["volumeMounts"]
                              if "hostPath" in volumes[m["name"]] and m["mountPath"] != "/"]
                self.assertTrue(any(state == p or state.startswith(p + "/") for p in host_paths), state)
                self.assertEqual(env_of(plugin)["NODE_ID"], None)  # from the downward API
                # The registrar points kubelet at the socket the plugin serves on the host.
                registrar = container(spec, "node-driver-registrar")
                reg = args_of(registrar)["--kubelet-registration-path"]
                self.assertEqual(reg, volumes["plugin-dir"]["hostPath"]["path"] + "/csi.sock")
                self.assertTrue(reg.startswith(kubelet["mountPath"] + "/plugins/" + DRIVER))

    def test_controller_deployment(self):
        for case in CASES:
            with self.subTest(case=case):
                docs = load(case)
                dep = one(docs, "Deployment", "-controller")
                spec = dep["spec"]["template"]["spec"]
                self.assertTrue(spec["securityContext"]["runAsNonRoot"])
                self.assertNotIn("hostNetwork", spec)
                names = [c["name"] for c in spec["containers"]]
                for sidecar in ["csi-provisioner", "csi-attacher", "csi-resizer", "liveness-probe"]:
                    self.assertIn(sidecar, names)
                for c in spec["containers"]:
                    sc = c.get("securityContext", {})
                    self.assertFalse(sc.get("privileged", False), c["name"])
                    self.assertTrue(sc.get("readOnlyRootFilesystem"), c["name"])
                    self.assertIs(sc.get("allowPrivilegeEscalation"), False, c["name"])
                    if c["name"].startswith("csi-"):
                        a = args_of(c)
                        self.assertIn("--leader-election", a, c["name"])
                        self.assertEqual(a["--leader-election-namespace"], dep["metadata"]["namespace"])
                driver = container(spec, "rds-csi")
                self.assertEqual(driver["args"][0], "controller")
                env = env_of(driver)
                self.assertTrue(env["RDS_CSI_RDS_ADDRESS"])
                # Never a password in the pod spec: it comes from the Secret as a file.
                self.assertNotIn("RDS_CSI_RDS_PASSWORD", env)
                self.assertNotIn("RDS_CSI_RDS_INSECURE", env)
                a = args_of(driver)
                self.assertTrue("--rds-password-file" in a or "--rds-key-file" in a)
                pinned = ("RDS_CSI_RDS_HOST_KEY_FINGERPRINT" in env or "--rds-known-hosts" in a
                          or "RDS_CSI_RDS_CERT_FINGERPRINT" in env or "--rds-ca-file" in a)
                self.assertTrue(pinned, "the RDS identity is pinned")
                secret = next(v for v in spec["volumes"] if v["name"] == "rds-auth")["secret"]["secretName"]
                for flag in ("--rds-password-file", "--rds-key-file"):
                    if flag in a:
                        key = os.path.basename(a[flag])
                        own = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret]
                        if own:
                            self.assertIn(key, own[0]["data"], "the file the controller reads is in the Secret")

    def test_csidriver(self):
        for case in CASES:
            with self.subTest(case=case):
                spec = one(load(case), "CSIDriver")["spec"]
                self.assertIs(spec["attachRequired"], True)
                self.assertIs(spec["podInfoOnMount"], True)
                self.assertEqual(spec["fsGroupPolicy"], "File")
                self.assertEqual(spec["volumeLifecycleModes"], ["Persistent"])
                # Without the provisioner's capacity tracking, storageCapacity would block pods.
                self.assertIs(spec.get("storageCapacity", False), False)

    def test_rbac_is_what_the_components_use(self):
        for case in CASES:
            with self.subTest(case=case):
                docs = load(case)
                ctrl = rules(docs, "ClusterRole", "-controller")
                self.assertEqual(ctrl[("", "persistentvolumes")], {"get", "list", "watch", "create", "patch", "delete"})
                self.assertEqual(ctrl[("storage.k8s.io", "volumeattachments")], {"get", "list", "watch", "patch"})
                self.assertEqual(ctrl[("events.k8s.io", "events")], {"create", "patch"})
                self.assertNotIn(("", "secrets"), ctrl, "the controller reads its Secret as a file")
                for (group, res), verbs in ctrl.items():
                    self.assertNotIn("*", verbs)
                    self.assertNotEqual(res, "*")
                driver = container(one(docs, "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi")
                serialized = env_of(driver).get("RDS_CSI_SERIALIZE_VMI_ATTACH") == "true"
                self.assertEqual(ctrl.get(("kubevirt.io", "virtualmachineinstances")),
                                 {"list"} if serialized else None)
                lease = rules(docs, "Role", "-controller")
                self.assertEqual(lease, {("coordination.k8s.io", "leases"): {"get", "watch", "list", "delete", "update", "create"}})
                snapshots = any(c["name"] == "csi-snapshotter" for c in
                                one(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"])
                self.assertEqual(("snapshot.storage.k8s.io", "volumesnapshotclasses") in ctrl, snapshots)

                node_args = args_of(container(one(docs, "DaemonSet", "-node")["spec"]["template"]["spec"], "rds-csi"))
                recovery = node_args["--pod-recovery"]
                roles = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-node")]
                if recovery == "off":
                    self.assertEqual(roles, [], "no API rights when the node does not use the API")
                    continue
                node = rules(docs, "ClusterRole", "-node")
                want = {("", "pods"): {"list"} | ({"delete"} if recovery == "delete" else set()),
                        ("events.k8s.io", "events"): {"create", "patch"}}
                self.assertEqual(node, want)

    def test_every_object_is_labelled_and_namespaced(self):
        cluster_scoped = {"CSIDriver", "StorageClass", "ClusterRole", "ClusterRoleBinding", "VolumeSnapshotClass"}
        for case in CASES:
            with self.subTest(case=case):
                for d in load(case):
                    meta = d["metadata"]
                    self.assertEqual(meta["labels"]["app.kubernetes.io/name"], "rds-csi", meta["name"])
                    self.assertEqual("namespace" in meta, d["kind"] not in cluster_scoped, f"{d['kind']} {meta['name']}")


class Cases(unittest.TestCase):
    """What particular values turn on and off."""

    def test_storage_classes(self):
        docs = load("storage-classes")
        classes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StorageClass"}
        self.assertEqual(set(classes), {"rds-ext4", "rds-xfs-retain", "rds-vm-block"})
        for sc in classes.values():
            self.assertEqual(sc["provisioner"], DRIVER)
            for value in sc["parameters"].values():
                self.assertIsInstance(value, str)
        ext4 = classes["rds-ext4"]
        self.assertEqual(ext4["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"], "true")
        self.assertEqual(ext4["parameters"]["reconnectDelay"], "5")
        self.assertEqual(ext4["parameters"]["csi.storage.k8s.io/fstype"], "ext4")
        xfs = classes["rds-xfs-retain"]
        self.assertEqual(xfs["parameters"]["csi.storage.k8s.io/fstype"], "xfs")
        self.assertEqual(xfs["reclaimPolicy"], "Retain")
        self.assertEqual(xfs["volumeBindingMode"], "WaitForFirstConsumer")
        self.assertIs(classes["rds-vm-block"]["allowVolumeExpansion"], False)
        self.assertIs(ext4["allowVolumeExpansion"], True)
        self.assertNotIn("annotations", xfs["metadata"])
        # The snapshotter only when asked for, and a VolumeSnapshotClass with it.
        self.assertEqual([d["metadata"]["name"] for d in docs if d["kind"] == "VolumeSnapshotClass"], ["rds-nvme"])
        self.assertEqual(one(docs, "VolumeSnapshotClass")["parameters"], {"snapshotMethod": "subvolume"})
        env = env_of(container(one(docs, "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi"))
        self.assertEqual(env["RDS_CSI_RDS_HOST_KEY_FINGERPRINT"].count(","), 1)
        self.assertEqual(env["RDS_CSI_BTRFS_FILESYSTEM"], "pool-fs")

    def test_snapshotter_is_off_by_default(self):
        docs = load("minimal")
        names = [c["name"] for c in one(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"]]
        self.assertNotIn("csi-snapshotter", names)
        self.assertFalse([d for d in docs if d["kind"] == "VolumeSnapshotClass"])

    def test_ssh_key(self):
        docs = load("ssh-key")
        dep = one(docs, "Deployment", "-controller")
        self.assertEqual(dep["spec"]["replicas"], 2)
        a = args_of(container(dep["spec"]["template"]["spec"], "rds-csi"))
        self.assertEqual(a["--rds-key-file"], "/etc/rds-csi/auth/ssh-privatekey")
        self.assertEqual(a["--rds-key-passphrase-file"], "/etc/rds-csi/auth/ssh-passphrase")
        self.assertEqual(a["--rds-known-hosts"], "/etc/rds-csi/trust/known_hosts")
        self.assertNotIn("--rds-password-file", a)
        self.assertEqual(set(one(docs, "Secret")["data"]), {"ssh-privatekey", "ssh-passphrase"})
        self.assertIn("known_hosts", one(docs, "ConfigMap", "-rds-trust")["data"])
        ds = one(docs, "DaemonSet", "-node")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in ds["volumes"]}
        self.assertEqual(volumes["kubelet-dir"]["hostPath"]["path"], "/var/lib/k0s/kubelet")
        self.assertEqual(volumes["state-dir"]["hostPath"]["path"], "/var/lib/rds-csi/volumes")
        plugin = args_of(container(ds, "rds-csi"))
        self.assertEqual(plugin["--state-dir"], "/var/lib/rds-csi/volumes")
        self.assertEqual(plugin["--block-publish-dir"], "/var/lib/k0s/kubelet/plugins/kubernetes.io/csi/volumeDevices")

    def test_rest_with_existing_secret(self):
        docs = load("rest")
        self.assertFalse([d for d in docs if d["kind"] == "Secret"], "the operator's Secret is used")
        spec = one(docs, "Deployment", "-controller")["spec"]["template"]["spec"]
        secret = next(v for v in spec["volumes"] if v["name"] == "rds-auth")["secret"]
        self.assertEqual(secret["secretName"], "rds-credentials")
        c = container(spec, "rds-csi")
        self.assertEqual(env_of(c)["RDS_CSI_RDS_TRANSPORT"], "rest")
        self.assertEqual(args_of(c)["--rds-ca-file"], "/etc/rds-csi/trust/ca.pem")
        self.assertIn("ca.pem", one(docs, "ConfigMap", "-rds-trust")["data"])

    def test_go_upgrade(self):
        """Replacing the Go driver: the names its PVs, claims and kubelet know stay the same."""
        docs = load("go-upgrade")
        self.assertEqual(one(docs, "CSIDriver")["metadata"]["name"], DRIVER)
        classes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StorageClass"}
        self.assertEqual(set(classes), {"rds-nvme", "rds-nvme-rwx"})
        for sc in classes.values():
            self.assertEqual(sc["provisioner"], DRIVER)
            self.assertEqual(sc["volumeBindingMode"], "WaitForFirstConsumer")
            self.assertEqual(sc["parameters"], {
                "csi.storage.k8s.io/fstype": "ext4",
                "nvmeAddress": "10.42.68.1",
                "nvmePort": "4420",
                "volumePath": "/storage-pool/metal-csi",
            })
        self.assertFalse([d for d in docs if d["kind"] == "Secret"], "the Secret made from its key")
        spec = one(docs, "Deployment", "-controller")["spec"]["template"]["spec"]
        secret = next(v for v in spec["volumes"] if v["name"] == "rds-auth")["secret"]
        self.assertEqual(secret["secretName"], "rds-csi-credentials")
        c = container(spec, "rds-csi")
        a, env = args_of(c), env_of(c)
        self.assertEqual(a["--rds-key-file"], "/etc/rds-csi/auth/ssh-privatekey")
        self.assertEqual(a["--rds-known-hosts"], "/etc/rds-csi/trust/known_hosts")
        self.assertEqual(a["--nqn-prefix"], "nqn.2000-02.com.mikrotik")
        self.assertEqual(env["RDS_CSI_RDS_USER"], "metal-csi")
        self.assertEqual(env["RDS_CSI_VOLUME_BASE_PATH"], "storage-pool/metal-csi")
        # The Go node plugin's socket: kubelet's registration of the driver is replaced.
        ds = one(docs, "DaemonSet", "-node")["spec"]["template"]["spec"]
        registrar = args_of(container(ds, "node-driver-registrar"))
        self.assertEqual(registrar["--kubelet-registration-path"],
                         "/var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock")

    def test_metrics(self):
        on = load("minimal-monitoring")
        services = {d["metadata"]["name"]: d for d in on if d["kind"] == "Service"}
        self.assertEqual(sorted(services), ["t-rds-csi-controller-metrics", "t-rds-csi-node-metrics"])
        self.assertEqual(services["t-rds-csi-controller-metrics"]["spec"]["ports"][0]["port"], 9809)
        self.assertEqual(services["t-rds-csi-node-metrics"]["spec"]["ports"][0]["port"], 9810)
        self.assertEqual(sorted(d["metadata"]["name"] for d in on if d["kind"] == "ServiceMonitor"),
                         ["t-rds-csi-controller", "t-rds-csi-node"])
        controller = container(one(on, "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi")
        self.assertEqual(args_of(controller)["--metrics-address"], ":9809")
        self.assertEqual(env_of(controller)["RDS_CSI_DEVICE_HEALTH_INTERVAL_SECONDS"], "30")
        # Without the CRD, no ServiceMonitor (it would fail the install).
        self.assertFalse([d for d in load("minimal") if d["kind"] == "ServiceMonitor"])
        off = load("metrics-off")
        self.assertFalse([d for d in off if d["kind"] in ("Service", "ServiceMonitor", "PodDisruptionBudget")])
        node = container(one(off, "DaemonSet", "-node")["spec"]["template"]["spec"], "rds-csi")
        self.assertEqual(args_of(node)["--metrics-address"], "")
        controller = container(one(off, "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi")
        self.assertEqual(args_of(controller)["--metrics-address"], "")
        # Nothing reads the device's health when no metrics are served.
        self.assertEqual(env_of(controller)["RDS_CSI_DEVICE_HEALTH_INTERVAL_SECONDS"], "0")
        self.assertNotIn("metrics", [p["name"] for p in node["ports"]])
        self.assertNotIn("initContainers", one(off, "DaemonSet", "-node")["spec"]["template"]["spec"])

    def test_opt_in_fencing_and_vmi_serialization(self):
        plain = env_of(container(one(load("minimal"), "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi"))
        self.assertNotIn("RDS_CSI_EXPORT_ACL", plain)
        self.assertNotIn("RDS_CSI_SERIALIZE_VMI_ATTACH", plain)
        self.assertEqual(plain["RDS_CSI_ATTACHMENT_STATE"], "kubernetes")
        self.assertEqual(plain["RDS_CSI_RDS_BREAKER_FAILURES"], "5")
        self.assertEqual(plain["RDS_CSI_RDS_BREAKER_COOL_DOWN_SECONDS"], "10")
        self.assertEqual((plain["RDS_CSI_ORPHANS"], plain["RDS_CSI_ORPHAN_GRACE"],
                          plain["RDS_CSI_ORPHAN_CHECK_INTERVAL"]), ("report", "1h", "10m"))
        rest = env_of(container(one(load("rest"), "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi"))
        self.assertEqual(rest["RDS_CSI_EXPORT_ACL"], "true")
        self.assertEqual((rest["RDS_CSI_ORPHANS"], rest["RDS_CSI_ORPHAN_GRACE"]), ("delete", "1d"))
        go = load("go-upgrade")
        env = env_of(container(one(go, "Deployment", "-controller")["spec"]["template"]["spec"], "rds-csi"))
        self.assertEqual(env["RDS_CSI_SERIALIZE_VMI_ATTACH"], "true")
        self.assertEqual(rules(go, "ClusterRole", "-controller")[("kubevirt.io", "virtualmachineinstances")], {"list"})

    def test_pdb(self):
        pdb = one(load("minimal"), "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        dep = one(load("minimal"), "Deployment", "-controller")
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])


class Refused(unittest.TestCase):
    """Values files the chart must refuse, each with the reason it names."""

    def test_refused(self):
        files = sorted(os.listdir(REFUSED))
        self.assertGreaterEqual(len(files), 5)
        for name in files:
            with self.subTest(values=name):
                path = os.path.join(REFUSED, name)
                with open(path) as f:
                    first = f.readline()
                self.assertTrue(first.startswith("# expect: "), f"{name} must start with '# expect: <text>'")
                expect = first[len("# expect: "):].strip()
                run = subprocess.run([HELM, "template", "t", CHART, "-f", path],
                                     capture_output=True, text=True)
                self.assertNotEqual(run.returncode, 0, f"{name} was accepted")
                self.assertIn(expect, run.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1] + sys.argv[4:], verbosity=1)
