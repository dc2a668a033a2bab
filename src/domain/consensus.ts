// The consensus lens (DESIGN §3): active assertions of a concept grouped by value, each group
// scored by Σ author trust × confidence + Σ voter trust × vote (+1 up, −1 down, each voter's
// newest vote, weighted by the voter's trust when the vote was cast). Pure: the caller
// supplies the assertions and the author trust to use (now, or an epoch's snapshot).

export interface ConsensusCandidate {
  id: string;
  agent: string;
  valueJson: string;
  confidence: number;
  lsn: number;
  /** Σ voter weight × (±1). */
  voteScore: number;
  votesUp: number;
  votesDown: number;
}

export interface ConsensusGroup {
  valueJson: string;
  score: number;
  authorScore: number;
  voteScore: number;
  /** Ids in the group, newest first. */
  assertions: string[];
  votesUp: number;
  votesDown: number;
  /** Highest LSN in the group (tie-break: the more recent claim wins). */
  newestLsn: number;
}

export interface ConsensusResult {
  /** Every group, best first. */
  groups: ConsensusGroup[];
  /** Winner's score minus the runner-up's (the winner's score when it stands alone). */
  margin: number;
}

export function consensus(
  candidates: readonly ConsensusCandidate[],
  trustOf: (agent: string) => number,
): ConsensusResult {
  const byValue = new Map<string, ConsensusGroup>();
  for (const c of candidates) {
    let g = byValue.get(c.valueJson);
    if (g === undefined) {
      g = {
        valueJson: c.valueJson,
        score: 0,
        authorScore: 0,
        voteScore: 0,
        assertions: [],
        votesUp: 0,
        votesDown: 0,
        newestLsn: 0,
      };
      byValue.set(c.valueJson, g);
    }
    g.authorScore += trustOf(c.agent) * c.confidence;
    g.voteScore += c.voteScore;
    g.votesUp += c.votesUp;
    g.votesDown += c.votesDown;
    g.assertions.push(c.id);
    if (c.lsn > g.newestLsn) g.newestLsn = c.lsn;
  }
  const groups = [...byValue.values()];
  for (const g of groups) g.score = g.authorScore + g.voteScore;
  groups.sort(
    (a, b) =>
      b.score - a.score ||
      b.newestLsn - a.newestLsn ||
      (a.valueJson < b.valueJson ? -1 : a.valueJson > b.valueJson ? 1 : 0),
  );
  const first = groups[0];
  const second = groups[1];
  const margin = first === undefined ? 0 : first.score - (second?.score ?? 0);
  return { groups, margin };
}
