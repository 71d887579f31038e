-- A local project's first member and workspace (`supabase db reset` runs this after the
-- migrations). Sign in as owner@example.com with the password `local-password`. Seeding
-- auth.users with SQL is for a local project only; on a hosted one members sign up through
-- Supabase Auth, whose trigger (migration `members`) announces each signup.
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
                        email_confirmed_at, raw_app_meta_data, raw_user_meta_data,
                        created_at, updated_at)
VALUES ('00000000-0000-0000-0000-000000000000', '5eed0000-0000-4000-8000-000000000001',
        'authenticated', 'authenticated', 'owner@example.com',
        extensions.crypt('local-password', extensions.gen_salt('bf')), now(),
        '{"provider": "email", "providers": ["email"]}', '{"name": "Local Owner"}', now(), now())
ON CONFLICT (id) DO NOTHING;

-- Password sign-in looks the member up by identity.
INSERT INTO auth.identities (id, user_id, provider_id, identity_data, provider,
                             last_sign_in_at, created_at, updated_at)
VALUES ('5eed0000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000001',
        '5eed0000-0000-4000-8000-000000000001',
        '{"sub": "5eed0000-0000-4000-8000-000000000001", "email": "owner@example.com"}',
        'email', now(), now(), now())
ON CONFLICT DO NOTHING;

INSERT INTO public.workspaces (id, name, timezone, currency)
VALUES ('5eed0000-0000-4000-8000-0000000000aa', 'Local workspace', 'UTC', 'USD')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.workspace_members (workspace_id, user_id, role)
VALUES ('5eed0000-0000-4000-8000-0000000000aa', '5eed0000-0000-4000-8000-000000000001', 'owner')
ON CONFLICT DO NOTHING;
