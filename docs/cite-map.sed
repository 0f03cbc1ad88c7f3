# cite-map.sed: maintenance script that points citations in Go comments at the docs in
# this repository:
#
#   PROTOCOL.md, PROTOCOL           -> docs/protocol.md      (sections keep their numbers)
#   REPLICATION.md, REPLICATION     -> docs/replication.md   (cases and invariants keep theirs)
#   DESIGN.md, DESIGN               -> docs/design.md        (section titles are kept)
#   contract point 14e              -> docs/replication.md case 14e
#
# Usage (GNU sed):
#
#   sed -i -f docs/cite-map.sed $(grep -rlE 'PROTOCOL|REPLICATION|DESIGN' --include='*.go' .)
#
# Only lines that hold a // comment are touched, and only the upper-case names are matched,
# so running it twice changes nothing the second time.

# A phrase that reads badly once the name becomes a path.
\,//, s/the PROTOCOL error codes/the error codes of docs\/protocol.md/g

# The contract points of the replication rules are its case 14.
\,//, s/contract point 14 \{0,1\}\([a-f]\)\>/docs\/replication.md case 14\1/g

# The names, with or without ".md".
\,//, s/\<PROTOCOL\(\.md\)\{0,1\}\>/docs\/protocol.md/g
\,//, s/\<REPLICATION\(\.md\)\{0,1\}\>/docs\/replication.md/g
\,//, s/\<DESIGN\(\.md\)\{0,1\}\>/docs\/design.md/g
