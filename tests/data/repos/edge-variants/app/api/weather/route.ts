export const runtime = 'edge';

// Edge, unpinned, but calls no governed AI API.
export async function GET(req: Request) {
  const city = new URL(req.url).searchParams.get('city') ?? 'Hong Kong';
  return fetch(`https://api.weather.example/v1/current?city=${encodeURIComponent(city)}`);
}
