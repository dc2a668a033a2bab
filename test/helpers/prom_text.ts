// A strict Prometheus text-format (0.0.4) parser for tests: it throws on anything the
// Prometheus text parser would reject, plus a few consistency rules (histograms cumulative,
// +Inf equal to _count, no duplicate series).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface Family {
  name: string;
  type: string;
  help: string | undefined;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_NAME = "[a-zA-Z_][a-zA-Z0-9_]*";
const LABEL_VALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const LABEL = `${LABEL_NAME}=${LABEL_VALUE}`;
// prom-client writes NaN as "Nan"; Prometheus parses values with Go's strconv.ParseFloat,
// which accepts NaN/Inf in any letter case, so the parser does too (and nothing else).
const VALUE = "[-+]?(?:[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[iI][nN][fF])|[nN][aA][nN]";
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL}(?:,${LABEL})*)?,?)\\})? (${VALUE})$`);
const HELP_RE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const LABEL_RE = new RegExp(`(${LABEL_NAME})=(${LABEL_VALUE})`, "g");

export function parseValue(s: string): number {
  if (/inf$/i.test(s)) return s.startsWith("-") ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return Number.NaN;
  return Number(s);
}

function unescapeLabel(v: string): string {
  return v.slice(1, -1).replace(/\\(["\\n])/g, (_m, c: string) => (c === "n" ? "\n" : c));
}

function familyOf(sample: string, type: string, fam: string): boolean {
  if (type === "histogram") return [`${fam}_bucket`, `${fam}_sum`, `${fam}_count`].includes(sample);
  if (type === "summary") return [fam, `${fam}_sum`, `${fam}_count`].includes(sample);
  return sample === fam;
}

/** Throws on anything the Prometheus text parser would reject (plus a few consistency rules). */
export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const lines = text.split("\n").slice(0, -1);
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}: ${line}`;
    if (line === "") continue;
    const help = HELP_RE.exec(line);
    const type = TYPE_RE.exec(line);
    if (help) {
      const name = help[1] as string;
      const fam = families.get(name);
      if (fam?.help !== undefined) throw new Error(`duplicate HELP, ${where}`);
      if (fam === undefined) {
        current = { name, type: "untyped", help: help[2], samples: [] };
        families.set(name, current);
      } else fam.help = help[2];
      continue;
    }
    if (type) {
      const name = type[1] as string;
      const fam = families.get(name);
      if (fam !== undefined && (fam.samples.length > 0 || fam.type !== "untyped")) {
        throw new Error(`TYPE after samples or duplicate TYPE, ${where}`);
      }
      current = fam ?? { name, type: "untyped", help: undefined, samples: [] };
      current.type = type[2] as string;
      families.set(name, current);
      continue;
    }
    if (line.startsWith("#")) throw new Error(`unexpected comment, ${where}`);
    const m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`malformed sample, ${where}`);
    const name = m[1] as string;
    if (current === undefined || !familyOf(name, current.type, current.name)) {
      throw new Error(`sample outside its family, ${where}`);
    }
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? "").matchAll(LABEL_RE)) {
      const key = lm[1] as string;
      if (key in labels) throw new Error(`duplicate label ${key}, ${where}`);
      labels[key] = unescapeLabel(lm[2] as string);
    }
    const id = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(id)) throw new Error(`duplicate series, ${where}`);
    seen.add(id);
    current.samples.push({ name, labels, value: parseValue(m[3] as string) });
  }
  for (const fam of families.values()) if (fam.type === "histogram") checkHistogram(fam);
  return families;
}

/** Buckets cumulative and sorted by le; +Inf bucket equals _count, per label set. */
function checkHistogram(fam: Family): void {
  const groups = new Map<string, { les: [number, number][]; count?: number }>();
  for (const s of fam.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { les: [] };
    groups.set(key, g);
    if (s.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${fam.name}: bucket without le`);
      g.les.push([parseValue(le), s.value]);
    } else if (s.name.endsWith("_count")) g.count = s.value;
  }
  for (const [key, g] of groups) {
    const sorted = [...g.les].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if ((sorted[i]?.[1] ?? 0) < (sorted[i - 1]?.[1] ?? 0)) {
        throw new Error(`${fam.name}${key}: buckets not cumulative`);
      }
    }
    const inf = sorted.at(-1);
    if (inf?.[0] !== Infinity || inf[1] !== g.count) {
      throw new Error(`${fam.name}${key}: +Inf bucket missing or != _count`);
    }
  }
}
