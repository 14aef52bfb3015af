import { useEffect, useRef } from 'react';
import { AccountPage } from './pages/AccountPage';
import { InvitationPage, invitationToken } from './pages/InvitationPage';
import { LoginPage } from './pages/LoginPage';
import { PricingPage } from './pages/PricingPage';
import { RegisterPage } from './pages/RegisterPage';
import { VerifyEmailPage, verificationToken } from './pages/VerifyEmailPage';
import { Link, navigate, useLocation } from './router';
import { signOut, useSession } from './session';

const PAGES: Record<string, { title: string; Page: () => React.JSX.Element | null }> = {
  '/': { title: 'Plans and pricing', Page: PricingPage },
  '/pricing': { title: 'Plans and pricing', Page: PricingPage },
  '/register': { title: 'Create your account', Page: RegisterPage },
  '/login': { title: 'Sign in', Page: LoginPage },
  '/account': { title: 'Your subscription', Page: AccountPage },
};

const INVITATION = { title: 'Join a team', Page: InvitationPage };
const VERIFY_EMAIL = { title: 'Confirm your email address', Page: VerifyEmailPage };

function pageFor(path: string) {
  if (PAGES[path]) return PAGES[path];
  if (invitationToken(path)) return INVITATION;
  if (verificationToken(path)) return VERIFY_EMAIL;
  return undefined;
}

function NotFound() {
  return (
    <>
      <h1>Page not found</h1>
      <p>
        <Link href="/">See the plans</Link>
      </p>
    </>
  );
}

export function App() {
  const { path } = useLocation();
  const session = useSession();
  const page = pageFor(path);
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);

  // A new page: say so in the title, and move focus to it (not on first load).
  useEffect(() => {
    document.title = `${page?.title ?? 'Page not found'} – KRAFTD`;
    if (first.current) first.current = false;
    else main.current?.focus();
  }, [path, page]);

  const Page = page?.Page ?? NotFound;
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href="/" className="brand">
          KRAFTD
        </Link>
        <nav aria-label="Main">
          <Link href="/pricing" aria-current={path === '/pricing' || path === '/' ? 'page' : undefined}>
            Pricing
          </Link>
          {session ? (
            <>
              <Link href="/account" aria-current={path === '/account' ? 'page' : undefined}>
                Account
              </Link>
              <button
                type="button"
                className="link"
                onClick={() => {
                  signOut();
                  navigate('/');
                }}
              >
                Sign out
              </button>
            </>
          ) : (
            <>
              <Link href="/login" aria-current={path === '/login' ? 'page' : undefined}>
                Sign in
              </Link>
              <Link href="/register" aria-current={path === '/register' ? 'page' : undefined}>
                Create account
              </Link>
            </>
          )}
        </nav>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        <Page />
      </main>
    </>
  );
}
