#!/bin/sh
# The postgres service of docker-compose.yml runs this once, when it starts on an empty volume
# (it is mounted into /docker-entrypoint-initdb.d): one login role and one database per bank,
# from the lines "<bank> <password>" of BANK_DATABASES_FILE (the compose secret that
# `python -m tools.ops broker-secrets` writes as secrets/bank-databases). Each bank's role owns
# its own database and may not connect to any other; the bank creates its tables itself.
# A bank added to consorcio.yml later: run this again by hand (it skips what exists), or start
# from an empty volume.
set -eu
: "${BANK_DATABASES_FILE:=/run/secrets/bank_databases}"
while read -r bank password; do
    [ -n "${bank}" ] || continue
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" --dbname postgres \
         -v bank="${bank}" -v password="${password}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'bank', :'password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'bank') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'bank', :'bank')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'bank') \gexec
REVOKE ALL ON DATABASE :"bank" FROM PUBLIC;
SQL
    echo "bank database ${bank} ready"
done < "${BANK_DATABASES_FILE}"
