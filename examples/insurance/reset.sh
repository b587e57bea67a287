#!/usr/bin/env bash
# Removes what demo.sh and the runs left: output/ (attachments, accepted policies, reports, mail, logs) and .sluice/.
cd "$(dirname "$0")" && rm -rf output .sluice
