"""The cluster's hot statements and the publication's, each one round trip (see
:class:`muxd.cluster.store.ClusterStore` for what they are for). Every statement runs in READ
COMMITTED, PostgreSQL's default."""

from __future__ import annotations

from typing import Final

from muxd.cluster.records import ANY, CHANNEL_PREFIX, RENT

OP_COLUMNS: Final = (
    "activation_id, number, box, service, country, operator, sum, rent, state, status,"
    " created, expires, finished, finish_sum"
)


LIVE: Final = (
    "SELECT DISTINCT ON (n.number) n.number, n.box, n.port, n.country, n.operator"
    " FROM numbers n JOIN boxes b ON b.name = n.box"
    " WHERE b.lease_until > now() AND n.sellable ORDER BY n.number, n.updated DESC"
)

# A box's numbers replaced in one transaction (ClusterStore.publish_numbers): the box row if
# new ($1 box, $2 version); its numbers no longer listed dropped ($2 the numbers); the listed
# ones upserted; each one's busy flag set from its open operations.
PUBLISH_BOX: Final = (
    "INSERT INTO boxes (name, lease_until, version) VALUES ($1, now(), $2)"
    " ON CONFLICT (name) DO NOTHING"
)
PUBLISH_DROP: Final = "DELETE FROM numbers WHERE box = $1 AND NOT number = ANY($2::text[])"
PUBLISH_UPSERT: Final = (
    "INSERT INTO numbers (box, number, port, iccid, country, country_id, operator,"
    " sellable, operator_code, date_start) SELECT $1, * FROM unnest($2::text[],"
    " $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::bool[],"
    " $9::int[], $10::bigint[])"
    " ON CONFLICT (box, number) DO UPDATE SET port = excluded.port,"
    " iccid = excluded.iccid, country = excluded.country,"
    " country_id = excluded.country_id, operator = excluded.operator,"
    " sellable = excluded.sellable, operator_code = excluded.operator_code,"
    " date_start = excluded.date_start, updated = now()"
    # An unchanged row is neither written nor locked (a republication every few seconds must
    # not hold up the reservations of those numbers).
    " WHERE (numbers.port, numbers.iccid, numbers.country, numbers.country_id,"
    " numbers.operator, numbers.sellable, numbers.operator_code,"
    " numbers.date_start) IS DISTINCT FROM (excluded.port, excluded.iccid,"
    " excluded.country, excluded.country_id, excluded.operator, excluded.sellable,"
    " excluded.operator_code, excluded.date_start)"
)
PUBLISH_BUSY: Final = (
    "UPDATE numbers n SET busy = b.open FROM (SELECT m.number, EXISTS (SELECT 1"
    " FROM operations o WHERE o.number = m.number AND o.state = 'open') AS open"
    " FROM numbers m WHERE m.box = $1) b"
    " WHERE n.box = $1 AND n.number = b.number AND n.busy <> b.open"
)

# GET_SERVICES: per live country, operator and service ($1: the services, "rent" among them),
# the numbers in no open operation and (but for rent) not sold for that service.
COUNTS: Final = f"""
WITH live AS ({LIVE}), state AS (
    SELECT l.*, EXISTS (
        SELECT 1 FROM operations o WHERE o.number = l.number AND o.state = 'open') AS busy
    FROM live l
)
SELECT st.country, st.operator, k.service,
       count(*) FILTER (WHERE NOT st.busy AND (k.service = '{RENT}' OR NOT EXISTS (
           SELECT 1 FROM sales s WHERE s.number = st.number AND s.service = k.service))) AS free
FROM state st CROSS JOIN unnest($1::text[]) AS k(service)
GROUP BY st.country, st.operator, k.service
"""


# GET_NUMBER's candidates: fitting numbers of live boxes in no open operation, least recently
# used first. $1 country, $2 operator, $3 mask patterns, $4 rent, $5 service.
_FITTING: Final = f"""
    SELECT n.box, n.number, n.country, n.operator, n.last_used
    FROM numbers n JOIN boxes b ON b.name = n.box
    WHERE n.country = $1 AND n.sellable AND NOT n.busy AND b.lease_until > now()
      AND ($2 = '{ANY}' OR n.operator = $2)
      AND NOT (ltrim(n.number, '+') LIKE ANY ($3::text[]))
      AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.number = n.number AND o.state = 'open')
      AND ($4 OR NOT EXISTS (
          SELECT 1 FROM sales s WHERE s.number = n.number AND s.service = $5))
    ORDER BY n.last_used NULLS FIRST, n.number"""

# The operations opened (``op``): their pushes go to the boxes holding the SIMs, their numbers
# are marked used and busy, and each holding box is notified.
_OPENED: Final = f"""
, push AS (
    INSERT INTO pushes (activation_id, box) SELECT activation_id, box FROM op
), touch AS (
    UPDATE numbers SET last_used = now(), busy = true
    WHERE number = ANY (ARRAY(SELECT number FROM op))  -- the index on number, however many
)
SELECT op.*, pg_notify('{CHANNEL_PREFIX}' || op.box, op.activation_id::text) AS notified,
       (SELECT count(*) FROM cand) AS candidates
FROM op
"""

_INSERT: Final = """
    INSERT INTO operations (number, box, service, country, operator, sum, rent, expires,
                            answered_by, request)"""

# GET_NUMBER for a group of requests with the same criteria, in one statement: k = the number
# of requests; up to k fitting numbers are locked, skipping those a concurrent reservation
# holds; a number listed by two boxes counts once; the i-th number goes to the i-th request
# (the earliest requests are served first). Each returned row names its request;
# ``candidates`` is how many rows were locked (more than rows returned: a number listed twice
# took two, and the requests left over may be tried again). $6 the requests' sums, $7 hold
# seconds, $8 answering box, $9 the requests' tokens.
RESERVE: Final = f"""
WITH cand AS ({_FITTING}
    LIMIT cardinality($9::uuid[])
    FOR UPDATE OF n SKIP LOCKED
), pick AS (
    SELECT d.*, row_number() OVER (ORDER BY d.last_used NULLS FIRST, d.number) AS i
    FROM (SELECT DISTINCT ON (c.number) c.* FROM cand c
          ORDER BY c.number, c.last_used NULLS FIRST) d
), op AS ({_INSERT}
    SELECT p.number, p.box, $5, p.country, p.operator, r.sum, $4,
           CASE WHEN $4 THEN NULL ELSE now() + make_interval(secs => $7) END, $8, r.request
    FROM pick p
    JOIN unnest($9::uuid[], $6::float8[]) WITH ORDINALITY AS r(request, sum, i) ON r.i = p.i
    RETURNING {OP_COLUMNS}, request
){_OPENED}"""

# The same for one request (the parameters as for a group of one), in the plainest form: a
# constant limit lets the planner stop at the first fitting number of the index it walks.
RESERVE_ONE: Final = f"""
WITH cand AS ({_FITTING}
    LIMIT 1
    FOR UPDATE OF n SKIP LOCKED
), op AS ({_INSERT}
    SELECT number, box, $5, country, operator, ($6::float8[])[1], $4,
           CASE WHEN $4 THEN NULL ELSE now() + make_interval(secs => $7) END, $8,
           ($9::uuid[])[1]
    FROM cand
    RETURNING {OP_COLUMNS}, request
){_OPENED}"""


# After an operation closed: its number is free again (unless another operation is open on it).
RELEASE: Final = (
    "UPDATE numbers n SET busy = false WHERE n.number = ANY($1::text[]) AND n.busy"
    " AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.number = n.number AND o.state = 'open')"
)


# FINISH_ACTIVATION in one statement: lock the operation (a concurrent FINISH of the same id
# waits, then sees it closed), close it if open (or record the status of an expired one that
# had none), count the sale, free the number. Returns the operation as it was before, plus
# whether this call changed it; a change is announced to the box pushing its SMS (so it closes
# the operation's window). $1 id, $2 status, $3 sum, $4 the status sells.
FINISH: Final = f"""
WITH cur AS (
    SELECT {OP_COLUMNS} FROM operations WHERE activation_id = $1 FOR UPDATE
), upd AS (
    UPDATE operations o
    SET state = CASE WHEN cur.state = 'open' THEN 'finished' ELSE o.state END,
        finished = CASE WHEN cur.state = 'open' THEN now() ELSE o.finished END,
        status = $2, finish_sum = $3
    FROM cur
    WHERE o.activation_id = cur.activation_id
      AND (cur.state = 'open' OR (cur.state = 'expired' AND cur.status IS NULL))
    RETURNING o.activation_id
), sale AS (
    INSERT INTO sales (number, service, activation_id)
    SELECT cur.number, cur.service, cur.activation_id FROM cur
    WHERE $4 AND NOT cur.rent AND EXISTS (SELECT 1 FROM upd)
    ON CONFLICT DO NOTHING
), free AS (
    UPDATE numbers n SET busy = false FROM cur
    WHERE n.number = cur.number AND n.busy AND cur.state = 'open' AND EXISTS (SELECT 1 FROM upd)
)
SELECT cur.*, EXISTS (SELECT 1 FROM upd) AS changed,
       CASE WHEN EXISTS (SELECT 1 FROM upd)
            THEN pg_notify('{CHANNEL_PREFIX}' || cur.box, cur.activation_id::text) END AS notified
FROM cur
"""


# Announce closed operations ($1: their ids) to the boxes pushing their SMS.
ANNOUNCE: Final = (
    f"SELECT pg_notify('{CHANNEL_PREFIX}' || p.box, p.activation_id::text)"
    " FROM pushes p WHERE p.activation_id = ANY($1::bigint[])"
)

# v2 list mode: the numbers this box stored that are on the last list Onlinesim accepted from
# the publisher (whichever box the list gave them to), and whether that record was renewed
# within $2 seconds (no row: nobody recorded one yet). A record dated ahead of the database's
# clock (the clock stepped back) is not fresh: a live holder renews it at once, a dead one never.
FLEET_LISTED: Final = (
    "SELECT p.at > now() - make_interval(secs => $2) AND p.at <= now() AS fresh,"
    " ARRAY(SELECT l.number FROM fleet_listed l JOIN numbers n ON n.number = l.number"
    " WHERE n.box = $1) AS numbers"
    " FROM fleet_published p WHERE p.id = 1"
)
