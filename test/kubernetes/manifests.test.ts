/**
 * Every manifest in deploy/kubernetes/ is valid against the Kubernetes API schemas (the npm package
 * kubernetes-models: the OpenAPI schemas of the Kubernetes release it is built from, compiled to
 * validators), and the two variants keep the promises docs/scale-out.md makes:
 *  - xdp (DaemonSet): host network, NET_ADMIN + BPF, bpffs mounted, mode: xdp with announce:;
 *  - proxy (Deployment): no added capability, not root, not on the host network, a port ≥ 1024;
 *  - both: readiness from /healthz on the admin port, a metrics port with Prometheus annotations that
 *    name it, terminationGracePeriodSeconds ≥ withdraw_grace + drain_timeout, a config featherlb's own
 *    loader accepts (the ConfigMap's lb.yaml), reloaded on change (config_watch not off);
 *  - the BIRD config in the ConfigMap is deploy/bird/instance.conf (its site block aside), with
 *    featherlb's announce.table.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { DaemonSet, Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Namespace, Service, ServiceAccount } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/types.ts";

const ROOT = join(import.meta.dir, "../..");
const DIR = join(ROOT, "deploy/kubernetes");

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ServiceAccount": ServiceAccount,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/DaemonSet": DaemonSet,
  "apps/v1/Deployment": Deployment,
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : name.endsWith(".yaml") ? [path] : [];
  });
}

interface Manifest {
  file: string;
  doc: any;
}
const manifests: Manifest[] = files(DIR).flatMap((file) =>
  parseAllDocuments(readFileSync(file, "utf8")).map((d) => {
    if (d.errors.length) throw new Error(`${relative(ROOT, file)}: ${d.errors[0]!.message}`);
    return { file: relative(ROOT, file), doc: d.toJS() };
  }),
);
const find = (kind: string, name: string) => manifests.find((m) => m.doc.kind === kind && m.doc.metadata?.name === name)?.doc;

describe("deploy/kubernetes", () => {
  test("has the objects the docs list", () => {
    const kinds = manifests.map((m) => `${m.doc.kind}/${m.doc.metadata.name}`).sort();
    expect(kinds).toEqual(
      [
        "ConfigMap/featherlb-proxy",
        "ConfigMap/featherlb-xdp",
        "DaemonSet/featherlb-xdp",
        "Deployment/featherlb-proxy",
        "Namespace/featherlb",
        "Service/featherlb-proxy",
        "ServiceAccount/featherlb",
      ].sort(),
    );
  });

  test.each(manifests.map((m) => [`${m.file}: ${m.doc.kind} ${m.doc.metadata?.name}`, m] as const))("%s is valid against the Kubernetes schema", (_name, m) => {
    const model = MODELS[`${m.doc.apiVersion}/${m.doc.kind}`];
    expect(model, `no schema known for ${m.doc.apiVersion} ${m.doc.kind}`).toBeDefined();
    expect(() => new model!(m.doc).validate()).not.toThrow();
    if (m.doc.kind !== "Namespace") expect(m.doc.metadata.namespace).toBe("featherlb");
  });

  test("the schema check is real: a wrong type is refused", () => {
    const ds = structuredClone(find("DaemonSet", "featherlb-xdp"));
    ds.spec.template.spec.terminationGracePeriodSeconds = "forty";
    expect(() => new DaemonSet(ds).validate()).toThrow(/terminationGracePeriodSeconds/);
  });

  const workloads = [
    { kind: "DaemonSet", name: "featherlb-xdp", mode: "xdp" },
    { kind: "Deployment", name: "featherlb-proxy", mode: "proxy" },
  ] as const;

  for (const w of workloads) {
    describe(`${w.kind} ${w.name}`, () => {
      const obj = find(w.kind, w.name);
      const pod = obj.spec.template.spec;
      const container = pod.containers.find((c: any) => c.name === "featherlb");
      const configMapName = pod.volumes.find((v: any) => v.configMap)?.configMap.name;
      const configMap = find("ConfigMap", configMapName);
      const config: Config = parseConfig(configMap.data["lb.yaml"], `${configMapName}/lb.yaml`);

      test("runs featherlb as the ServiceAccount, with its ConfigMap's lb.yaml, which featherlb accepts", () => {
        expect(pod.serviceAccountName).toBe("featherlb");
        expect(find("ServiceAccount", "featherlb")).toBeDefined();
        const mount = container.volumeMounts.find((m: any) => pod.volumes.find((v: any) => v.name === m.name)?.configMap);
        expect(container.args).toEqual([`${mount.mountPath}/lb.yaml`]);
        expect(config.mode).toBe(w.mode);
        expect(config.config_watch_ms).toBeGreaterThan(0);
      });

      test("readiness from /healthz and a metrics port with Prometheus annotations, all on admin.listen's port", () => {
        const admin = config.admin.listen!;
        expect(admin.host).toBe("0.0.0.0");
        const metrics = container.ports.find((p: any) => p.name === "metrics");
        expect(metrics.containerPort).toBe(admin.port);
        expect(container.readinessProbe.httpGet).toEqual({ path: "/healthz", port: "metrics" });
        expect(obj.spec.template.metadata.annotations).toEqual({ "prometheus.io/scrape": "true", "prometheus.io/port": String(admin.port), "prometheus.io/path": "/metrics" });
      });

      test("terminationGracePeriodSeconds covers withdraw_grace + drain_timeout", () => {
        expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(config.drain_timeout_ms + (config.announce?.withdraw_grace_ms ?? 0));
      });

      if (w.mode === "xdp") {
        test("host network, NET_ADMIN + BPF, bpffs mounted, the VIP announced", () => {
          expect(pod.hostNetwork).toBe(true);
          expect(container.securityContext.capabilities.add).toEqual(expect.arrayContaining(["NET_ADMIN", "BPF"]));
          const bpffs = pod.volumes.find((v: any) => v.hostPath?.path === "/sys/fs/bpf");
          expect(container.volumeMounts.find((m: any) => m.name === bpffs?.name)?.mountPath).toBe("/sys/fs/bpf");
          expect(config.announce).toBeDefined();
        });

        test("bird.conf is deploy/bird/instance.conf with featherlb's table", () => {
          const site = /# ---- site:.*\n[\s\S]*?# ---- end of site -+\n/;
          const shipped = readFileSync(join(ROOT, "deploy/bird/instance.conf"), "utf8");
          const inMap: string = configMap.data["bird.conf"];
          expect(inMap.replace(site, "")).toBe(shipped.replace(site, ""));
          expect(inMap).toContain(`define ANNOUNCE_TABLE = ${config.announce!.table};`);
          expect(pod.containers.map((c: any) => c.name)).toContain("bird");
        });
      } else {
        test("no added capability, not root, not on the host network, a port that needs no privilege", () => {
          expect(pod.hostNetwork).toBeUndefined();
          expect(container.securityContext.capabilities).toEqual({ drop: ["ALL"] });
          expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
          expect(pod.securityContext.runAsNonRoot).toBe(true);
          for (const s of config.services) expect(s.listen.port).toBeGreaterThanOrEqual(1024);
        });
      }
    });
  }
});
