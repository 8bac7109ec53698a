/**
 * kvstore: the contract between clients and nodes, and between nodes.
 *
 * Every node serves two services, each on a port of its own (framed transport,
 * binary protocol):
 * - KVStore, on its client port (the cluster file's HOST:PORT): what clients call.
 *   Any node takes any client call and coordinates it: it finds the key's three
 *   replicas on the ring, sends to them in parallel, and answers as soon as the
 *   consistency level is met. When the node's authentication is on (the default),
 *   a connection calls login first; every later call on it runs with that user's
 *   role (read, readwrite, admin), and a call beyond it raises Unauthorized.
 * - Internode, on its peer port (the cluster file's fourth column): what
 *   coordinators send to replicas, and what the failure detector and hint
 *   hand-off use. A client connection cannot reach these calls: they do not
 *   exist on the client port, and the peer port serves only a connection that
 *   proves it knows the cluster secret.
 *
 * Every answer fits in 16,000,000 bytes, under the 16,384,000-byte frame that stock Thrift clients
 * accept by default: a value is at most 15 MiB (the node's --max-value-bytes, at most 15,929,344), and
 * answers that hold many cells (scan, multi_get, dump) stop at that budget and say where to go on.
 *
 * Keys and values are raw bytes. Timestamps are microseconds since the Unix
 * epoch, given by the coordinator; the higher timestamp wins. On a tie a
 * delete beats an expiring value, which beats a plain one; then the later
 * expiry, then the lexically greater value. So every replica converges.
 */

namespace py kvstore_rpc

/** How many of a key's replicas must answer before the coordinator does. */
enum ConsistencyLevel {
  /** One replica: fastest; survives crashes of the others. */
  ONE = 1,
  /** Two of three replicas: a QUORUM read sees every QUORUM write acknowledged before it began. */
  QUORUM = 2,
  /** Every replica: Unavailable when any replica of the key is down. */
  ALL = 3,
}

/**
 * A value and the timestamp that orders it against other writes of the same key.
 * A tombstone (a delete) has no value.
 */
struct Cell {
  /** Unset in a tombstone. */
  1: optional binary value,
  2: i64 timestamp,
  /**
   * Microseconds since the epoch. A value: when it expires (0: never), fixed by the coordinator.
   * A tombstone: when it was deleted; it is kept for the grace period from then.
   */
  3: i64 expires_at = 0,
}

/** A key and its cell: one write as a replica applies it. */
struct Mutation {
  1: binary key,
  2: Cell cell,
}

/** The answer to put: the timestamp the write was given and who took it. */
struct WriteResult {
  1: i64 timestamp,
  /** Node ids of the replicas that had acknowledged when the coordinator answered. */
  2: list<i32> acknowledged,
  /** Node ids of the replicas that were down: each will get the write through a hint. */
  3: list<i32> hinted,
}

/** The answer to get. A deleted or expired key answers as absent. */
struct ReadResult {
  /** The newest cell among the replicas that answered; unset when none has the key. */
  1: optional Cell cell,
  /** Node ids of the replicas whose answers the coordinator used. */
  2: list<i32> answered,
  /** Node ids of replicas that were stale or missing the key and were repaired before the answer. */
  3: list<i32> repaired,
}

/** One key of a multi_put. */
struct KeyValue {
  1: binary key,
  2: binary value,
}

/**
 * Keys in [start, end_key) (an empty end_key: no bound), at most limit of them: one replica's part of a scan.
 * (Not `end`: that word is reserved in most of the languages Thrift generates code for.)
 */
struct KeyRange {
  1: binary start,
  2: binary end_key,
  3: i32 limit,
}

/**
 * One replica's cells for one range of a replica_scan_batch. The whole answer stops at the answer budget
 * (16,000,000 bytes, but always at least one cell): a page cut there is `truncated`, and keys after its last
 * cell (all of the range's, when it is empty) may remain.
 */
struct ReplicaPage {
  1: list<Mutation> cells,
  2: bool truncated,
}

/** One page of a scan. */
struct ScanResult {
  /** Live keys in byte order, each with its cell. */
  1: list<Mutation> items,
  /** Where the next page starts (pass it as `start`); unset when the scan reached its end. */
  2: optional binary resume_key,
}

/** The answer to expire. */
struct ExpireResult {
  /** False when the key does not exist (nothing was written). */
  1: bool found,
  /** The write that set the expiry, when found. */
  2: optional WriteResult written,
}

/** One node as the cluster file describes it, and whether the answering node sees it up. */
struct NodeInfo {
  1: i32 node_id,
  2: string host,
  3: i32 port,
  /** The last key of the node's token range (previous token, this token]. */
  4: binary token,
  5: bool up,
  /**
   * The answering node's estimate of this node's clock minus its own, in microseconds (from heartbeats,
   * corrected by half the round trip); 0 for the answering node itself, or when it has no estimate.
   */
  6: i64 clock_offset,
  /**
   * As nodetool status prints it: "N" normal, "J" joining, "L" leaving, "M" moving (a ring change under way).
   * Unset from nodes older than ring epochs.
   */
  7: optional string state,
  /** The ring epoch the answering node holds (it grows by one with each step of each ring change). */
  8: optional i64 ring_epoch,
}

/** The answer to a heartbeat. */
struct Heartbeat {
  1: i32 node_id,
  /** When this node process started, in microseconds: a new value means it restarted. */
  2: i64 generation,
  /** This node's wall clock when it answered, in microseconds: how peers estimate its offset from theirs. */
  3: i64 clock,
  /**
   * The newest timestamp this node has issued or seen (its hybrid clock), in microseconds: a node starting on
   * an empty data directory (a replaced disk, whose clock reservation was lost) stamps above it once it serves.
   */
  4: optional i64 newest_stamp,
  /** The ring epoch this node holds: a peer holding an older one fetches the ring from it (fetch_ring). */
  5: optional i64 ring_epoch,
}

/** One replica's whole state, for the inspector. */
struct NodeDump {
  1: i32 node_id,
  2: list<Mutation> cells,
  /** Pending hints this node holds, by target node id. */
  3: map<i32, i32> pending_hints,
  /** Bytes of the commit log's file on disk (it is allocated ahead of its records: see log_record_bytes). */
  4: i64 log_bytes,
  /** Bytes of records in the hint logs. */
  5: i64 hint_log_bytes,
  /** Records appended to the commit log since the node started, and the fsyncs that made them durable. */
  6: i64 records_written,
  7: i64 fsyncs,
  /** With a limit: where the next page starts (pass it as `start`); unset after the last page. */
  8: optional binary next_start,
  /** Of log_bytes, those that hold records. */
  9: optional i64 log_record_bytes,
}

/**
 * A token range: the keys in (start_token, end_token] in byte order; start_token >= end_token: it wraps past
 * the largest key.
 */
struct TokenRange {
  1: binary start_token,
  2: binary end_token,
}

/** One key of a hash-tree leaf in a range sync: its cell's timestamp and 64-bit digest (kvstore.core.hashtree). */
struct SyncEntry {
  1: binary key,
  2: i64 timestamp,
  3: i64 digest,
}

/** The entries of the first `leaves` leaves asked for (whole leaves, within the answer budget; at least one). */
struct SyncEntries {
  1: list<SyncEntry> entries,
  2: i32 leaves,
}

/** Range sync: the cells of whole leaves (see sync_cells), and how many of the leaves asked for they cover. */
struct SyncCells {
  1: list<Mutation> cells,
  2: i32 leaves,
}

/** One token range a node holds, as it sees it. */
struct RangeState {
  1: TokenRange token_range,
  /** Its replicas' node ids, in ring order. */
  2: list<i32> replicas,
  /** When its last full repair (every replica) finished, in wall-clock microseconds; 0: never. */
  3: i64 repaired_at,
  /** Every write stamped below this was on all its replicas when that repair finished (tombstones below may go). */
  4: i64 repaired_since,
  /** False while this node is being replaced and has not synced the range yet: it answers no reads of it. */
  5: bool readable,
  /** Keys this node holds in it. */
  6: i64 keys,
  /** The bytes this node holds in it (keys, values, and 64 bytes a cell), estimated from its byte sample. */
  7: optional i64 bytes,
}

/** One key of a replica's byte sample and the bytes it stands for (see byte_sample). */
struct SampledKey {
  1: binary key,
  2: i64 bytes,
}

/** A node's repairs: the one running (or the last), and the state of every range it holds. */
struct RepairStatus {
  1: i32 node_id,
  /** "repair", "automatic" or "replace"; empty when none has run since the node started. */
  2: string kind,
  3: bool running,
  4: i32 ranges_total,
  5: i32 ranges_done,
  /** Keys whose entries were compared, and cells sent to this node (in) and from it to others (out). */
  6: i64 keys_compared,
  7: i64 cells_in,
  8: i64 cells_out,
  9: i64 bytes_sent,
  /** The ranges that could not be repaired, each with why. */
  10: list<string> failed,
  /** When it started, wall-clock microseconds, and how long it has run (or ran), in seconds. */
  11: i64 started,
  12: double elapsed,
  13: list<RangeState> ranges,
  /** How far it is, from 0 to 1 (ranges done, and the leaves of the range under way). */
  14: double fraction,
}

/** The request itself is wrong (empty or oversized key, oversized value, unknown level); `why` says how. */
exception InvalidRequest {
  1: string why,
}

/**
 * Fewer replicas are alive than the level needs: nothing was written or read.
 * clock_offset is true when the node refused to coordinate a write because its
 * own clock is too far from its peers': another node can take the request.
 */
exception Unavailable {
  1: string why,
  2: i32 alive,
  3: i32 needed,
  4: optional bool clock_offset,
}

/**
 * Not enough replicas answered in time. For a write this is ambiguous: it may
 * or may not have been applied (replicas that did not answer get a hint).
 */
exception TimedOut {
  1: string why,
  2: i32 acknowledged,
  3: i32 needed,
}

/** A replica could not make a write durable (for example: disk full). */
exception StorageFailure {
  1: string why,
}

/**
 * A read-your-writes read found no cell at least as new as the session's timestamp on any
 * replica it could reach: the data it would return is older than what this client wrote or read.
 */
exception StaleRead {
  1: string why,
  /** The session's timestamp for the key. */
  2: i64 wanted,
  /** The newest timestamp found (0: the key was found nowhere). */
  3: i64 seen,
}

/** login was refused: no such user, or the wrong password (which of the two is not said). */
exception AuthenticationFailed {
  1: string why,
}

/**
 * The call needs a login first, or a role the connection's user does not have; `why` names the user, the
 * role and what the call needs (for example "user 'bob' has role read; put needs readwrite").
 */
exception Unauthorized {
  1: string why,
}

/** Who a connection runs as after login. */
struct LoginResult {
  1: string user,
  /** read, readwrite or admin. */
  2: string role,
}

/** One key's outcome in a multi_put: a result, or the error that key met. */
struct KeyWriteOutcome {
  1: binary key,
  2: optional WriteResult result,
  3: optional InvalidRequest invalid,
  4: optional Unavailable unavailable,
  5: optional TimedOut timed_out,
}

/** One key's outcome in a multi_get. */
struct KeyReadOutcome {
  1: binary key,
  2: optional ReadResult result,
  3: optional InvalidRequest invalid,
  4: optional Unavailable unavailable,
  5: optional TimedOut timed_out,
  6: optional StaleRead stale,
}

/** The client calls, on each node's client port: any node coordinates any of them. */
service KVStore {

  /**
   * Write value under key at the given level; with ttl_seconds > 0, the value expires that long from now.
   * min_timestamp (a session's newest timestamp, 0: none): the write is stamped above it, so a session's
   * writes are ordered as it made them, whichever nodes coordinate them.
   */
  WriteResult put(1: binary key, 2: binary value, 3: ConsistencyLevel level, 4: i32 ttl_seconds,
                  5: i64 min_timestamp)
    throws (1: InvalidRequest invalid, 2: Unavailable unavailable, 3: TimedOut timed_out,
            9: Unauthorized unauthorized),

  /**
   * Read the newest value of key among `level` replicas; repairs stale replicas it saw.
   * min_timestamp > 0 (a read-your-writes session): if the newest cell among the first answers is
   * older, wait for the other replicas; if none has one that new, raise StaleRead.
   */
  ReadResult get(1: binary key, 2: ConsistencyLevel level, 3: i64 min_timestamp)
    throws (1: InvalidRequest invalid, 2: Unavailable unavailable, 3: TimedOut timed_out, 4: StaleRead stale,
            9: Unauthorized unauthorized),

  /** Delete key: write a tombstone at the given level, stamped above min_timestamp (as for put). */
  WriteResult remove(1: binary key, 2: ConsistencyLevel level, 3: i64 min_timestamp)
    throws (1: InvalidRequest invalid, 2: Unavailable unavailable, 3: TimedOut timed_out,
            9: Unauthorized unauthorized),

  /**
   * Make an existing key expire `seconds` from now (Redis EXPIRE): read at `level`, write it back.
   * min_timestamp: a session's, as for get, and the floor of the write's timestamp, as for put.
   */
  ExpireResult expire(1: binary key, 2: i32 seconds, 3: ConsistencyLevel level, 4: i64 min_timestamp)
    throws (1: InvalidRequest invalid, 2: Unavailable unavailable, 3: TimedOut timed_out, 4: StaleRead stale,
            9: Unauthorized unauthorized),

  /** Seconds until key expires (Redis TTL): -1 when it never does, -2 when it does not exist. */
  i64 ttl(1: binary key, 2: ConsistencyLevel level, 3: i64 min_timestamp)
    throws (1: InvalidRequest invalid, 2: Unavailable unavailable, 3: TimedOut timed_out, 4: StaleRead stale,
            9: Unauthorized unauthorized),

  /**
   * Write many keys, each at `level` (not atomic across keys): one outcome per key, in order.
   * Each replica gets one internode call for all its keys. min_timestamp: as for put.
   */
  list<KeyWriteOutcome> multi_put(1: list<KeyValue> items, 2: ConsistencyLevel level, 3: i32 ttl_seconds,
                                  4: i64 min_timestamp)
    throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /**
   * Read many keys, each at `level`: one outcome per key, in order. min_timestamps: the session's.
   * When the answer reaches its byte budget the list stops early: the keys after the last outcome were
   * not read, and are asked for again in another call (at least one key is always answered).
   */
  list<KeyReadOutcome> multi_get(1: list<binary> keys, 2: ConsistencyLevel level, 3: map<binary, i64> min_timestamps)
    throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /**
   * The live keys in [start, end_key) in byte order (an empty `end_key`: to the end of the key space),
   * at most `limit` and no more than fit in the answer's byte budget (resume_key says where the next
   * page starts), read from every token range's replicas at `level` and merged.
   */
  ScanResult scan(1: binary start, 2: binary end_key, 3: i32 limit, 4: ConsistencyLevel level)
    throws (1: InvalidRequest invalid, 2: Unavailable unavailable, 3: TimedOut timed_out,
            9: Unauthorized unauthorized),

  /** The nodes that hold key's replicas, in ring order (like nodetool getendpoints). */
  list<NodeInfo> get_endpoints(1: binary key) throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /** Every node of the ring, and whether this node sees it up. The one call, with login, allowed before login. */
  list<NodeInfo> describe_ring(),

  /**
   * Authenticate this connection (when the node's authentication is on): every later call on it runs
   * as `user`, with that user's role. With authentication off, any login succeeds, as admin.
   */
  LoginResult login(1: string user, 2: string password) throws (1: AuthenticationFailed failed),

  /**
   * Admin (role admin): this node's replica as stored, for the inspector; with a non-empty `key`, only that
   * key. Otherwise its cells from `start` in key order, tombstones included: at most `limit` (> 0; 0: no
   * count; below 0: InvalidRequest), and no more than fit in the answer's byte budget; next_start says where
   * the next page starts.
   */
  NodeDump dump(1: binary key, 2: binary start, 3: i32 limit)
    throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /**
   * Admin (role admin): compact this node's log now (as nodetool compact): expired values become
   * tombstones, tombstones older than the grace period are dropped. Returns how many were dropped.
   */
  i32 compact() throws (1: StorageFailure failure, 9: Unauthorized unauthorized),

  /**
   * Admin (role admin): repair these ranges (each one this node holds; empty: every range it holds) between
   * all their replicas, with this node running the syncs, in the background. InvalidRequest when a repair
   * already runs on this node, naming it. Follow it with repair_status.
   */
  void repair(1: list<TokenRange> ranges) throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /** Admin (role admin): the repair running or last run on this node, and every range it holds. */
  RepairStatus repair_status() throws (9: Unauthorized unauthorized),

  /**
   * Admin (role admin): the keys of this node's byte sample in a range, in key order (a wrapping range: those
   * above its start, then those up to its end), each with the bytes it stands for: their sum estimates the
   * range's bytes, and their running sum says where to split it. A key is sampled by a hash of it with a
   * probability that grows with its cell's size, so every replica samples the same keys. At most 100,000
   * entries (a denser sample is thinned, each kept entry standing for those left out).
   */
  list<SampledKey> byte_sample(1: TokenRange token_range) throws (9: Unauthorized unauthorized),

  /** Admin (role admin): this node's ring state as JSON (epoch, nodes, the change under way and its stage). */
  string ring_state() throws (9: Unauthorized unauthorized),

  /**
   * Admin (role admin): adopt this ring state (JSON, as ring_state answers; at most 1 MiB) if its epoch is newer,
   * durably, and answer once no request this node planned with an older epoch can still be running. Answers
   * the epoch held. InvalidRequest for a state that does not parse or is older than the node's.
   */
  i64 ring_apply(1: string state) throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /**
   * Admin (role admin): stream the ranges this node gains in the ring change under way, each from a replica
   * that loses it (range sync), in the background; follow it with repair_status (kind "stream").
   */
  void ring_stream(1: i64 epoch) throws (1: InvalidRequest invalid, 9: Unauthorized unauthorized),

  /**
   * Admin (role admin): drop every key of the ranges this node no longer holds (as nodetool cleanup), and
   * rewrite its log without them. Refused (InvalidRequest) during a ring change. Answers the keys dropped.
   */
  i64 cleanup() throws (1: InvalidRequest invalid, 2: StorageFailure failure, 9: Unauthorized unauthorized),
}

/**
 * The calls between nodes, on each node's peer port. Field ids are those they had when one service held all.
 * Before its first call, a connection proves it knows the cluster secret, in three frames (framed like Thrift
 * messages, but not Thrift): the caller sends "kvstore-peer/1 " and a 32-byte nonce; the node answers its own
 * 32-byte nonce and HMAC-SHA256(secret, "node" + caller nonce + node nonce); the caller sends
 * HMAC-SHA256(secret, "caller" + node nonce + caller nonce). A connection that fails, or takes over 5 s, is closed.
 */
service Internode {

  /** Apply a write to this replica's storage (durable before it returns). */
  void replica_write(1: Mutation mutation) throws (1: StorageFailure failure, 2: InvalidRequest invalid),

  /** This replica's cell for key; unset when it has none. */
  ReadResult replica_read(1: binary key) throws (1: InvalidRequest invalid),

  /**
   * Apply many writes with one fsync. Coordinators coalesce what they send to one replica:
   * every write queued for it while the previous batch was in flight goes in the next one.
   * For each write, in order: 0 when it is now this replica's cell of the key, else the timestamp of the
   * newer cell the replica holds instead (the coordinator then stamps the write again above it), or -1 when
   * the replica refused the write: stamped more than its --max-clock-offset ahead of its clock.
   */
  list<i64> replica_write_batch(1: list<Mutation> mutations)
    throws (1: StorageFailure failure, 2: InvalidRequest invalid),

  /**
   * This replica's cells for many keys, in the order asked (each ReadResult's cell unset when absent). The
   * answer stops at the answer budget (16,000,000 bytes, but always one key): the keys after the last
   * answered are asked for again.
   */
  list<ReadResult> replica_read_batch(1: list<binary> keys) throws (1: InvalidRequest invalid),

  /**
   * For each range (at most 128), this replica's cells for keys in [start, end_key) (empty end_key:
   * unbounded), tombstones and expired cells included, at most `limit`, in byte order, the whole answer
   * within the answer budget (see ReplicaPage).
   */
  list<ReplicaPage> replica_scan_batch(1: list<KeyRange> ranges) throws (1: InvalidRequest invalid),

  /**
   * Apply hinted writes, in order, from a coordinator that held them while this node was down. A cell stamped
   * more than --max-clock-offset ahead of this node's clock is refused (InvalidRequest; the others are applied).
   */
  void deliver_hints(1: list<Mutation> mutations) throws (1: StorageFailure failure, 2: InvalidRequest invalid),

  /**
   * Liveness: sender announces itself; the answer names this node and its generation. A sender that is not
   * another node of this node's ring is refused.
   */
  Heartbeat heartbeat(1: i32 from_node) throws (1: InvalidRequest invalid),

  /**
   * Range sync: this replica's hash-tree hashes of a range it holds. No branches: the branch hashes (64);
   * otherwise the 64 leaf hashes of each branch listed, one after another. `session` names the sync: a range
   * takes one session at a time (InvalidRequest names the one it is in).
   */
  list<i64> sync_hashes(1: i64 session, 2: TokenRange token_range, 3: list<i32> branches)
    throws (1: InvalidRequest invalid),

  /** Range sync: the (key, timestamp, digest) of every key in the leaves listed, whole leaves within the budget. */
  SyncEntries sync_entries(1: i64 session, 2: TokenRange token_range, 3: list<i32> leaves)
    throws (1: InvalidRequest invalid),

  /**
   * Range sync: every cell of the leaves listed, whole leaves within the answer budget (what a side with
   * nothing in those leaves receives, without comparing entries first: a new node streaming a range).
   */
  SyncCells sync_cells(1: i64 session, 2: TokenRange token_range, 3: list<i32> leaves)
    throws (1: InvalidRequest invalid),

  /**
   * Range sync: this replica's cells for keys of the range, in the order asked (each ReadResult's cell unset
   * when absent), stopping at the answer budget (the keys after the last answered are asked for again). Unlike
   * replica_read_batch, answered while this node is being replaced too: a sync compares cells, not answers.
   */
  list<ReadResult> sync_read(1: i64 session, 2: TokenRange token_range, 3: list<binary> keys)
    throws (1: InvalidRequest invalid),

  /**
   * Range sync: the session is over (the range is free for another). With since > 0 it was a full repair
   * (every replica): record durably that every write stamped below `since` is on every replica of the range.
   */
  void sync_finished(1: i64 session, 2: TokenRange token_range, 3: i64 since)
    throws (1: StorageFailure failure, 2: InvalidRequest invalid),

  /** The ring state this node holds, as JSON (what a node that heard of a newer epoch fetches). */
  string fetch_ring(),
}
