-- Dense person x calendar month panel of the study window: exposure and monthly activity
-- counts (macro person_months_of_persons). Built var('panel_chunk_persons') people at a time:
-- this SELECT is the first part, the post-hook inserts the rest (macros/person_month_panel.sql).
{{ config(post_hook="{{ insert_remaining_person_month_parts() }}") }}
{{ person_months_of_persons(1, var('panel_chunk_persons') | int) }}
