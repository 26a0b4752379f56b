import { NextResponse } from 'next/server';
import type { NextRequest } from 'next/server';

// Edge by default; calls no AI provider.
export function middleware(request: NextRequest) {
  if (!request.cookies.has('session')) {
    return NextResponse.redirect(new URL('/login', request.url));
  }
  return NextResponse.next();
}

export const config = { matcher: ['/dashboard/:path*'] };
